//! IAM policy documents (`berth_iam::policy`): parsing (size, depth, grammar) never panics, and
//! a parsed policy is evaluated — with and without a resource, for a user and for nobody, with
//! condition keys set — without panicking or taking more than linear-ish time.

#![no_main]

use berth_iam::policy::{Context, Policy, PolicyKind, Principal, Request, authorize, may_allow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let alice = Principal::User {
        account: "123456789012".into(),
        name: "alice".into(),
    };
    let mut ctx = Context::new();
    ctx.set("aws:SourceIp", "10.1.2.3");
    ctx.set("aws:CurrentTime", "2026-12-03T12:00:00Z");
    ctx.set("aws:EpochTime", "1796300000");
    ctx.set("aws:SecureTransport", "false");
    ctx.set_all("aws:TagKeys", vec!["team".into(), "env".into()]);
    ctx.set("aws:ResourceTag/team", "core");
    for kind in [PolicyKind::Identity, PolicyKind::Resource] {
        let Ok(p) = Policy::parse(text, kind) else {
            continue;
        };
        for principal in [&alice, &Principal::Anonymous] {
            for (action, resource) in [
                ("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:123456789012:repository/team/app"),
                ("ecr:PutImage", "*"),
                ("ECR:GetAuthorizationToken", "*"),
            ] {
                let req = Request {
                    principal,
                    action,
                    resource,
                    context: &ctx,
                };
                let _ = match kind {
                    PolicyKind::Identity => authorize(&[&p], &[], &req),
                    _ => authorize(&[], &[&p], &req),
                };
                let _ = may_allow(&[&p], &[&p], principal, action);
            }
        }
    }
});
