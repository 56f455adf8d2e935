//! ARG/ENV scoping and the stage graph, as BuildKit resolves them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use berth_dockerfile::{
    Base, Command, GlobalScope, PlatformParts, StageError, StageGraph, StageScope, Vars, parse,
    platform_args,
};

fn auto() -> Vars {
    platform_args(
        &PlatformParts::parse("linux/arm64/v8").unwrap(),
        &PlatformParts::parse("linux/amd64").unwrap(),
    )
}

fn global(text: &str, build_args: &[(&str, &str)]) -> (berth_dockerfile::Dockerfile, GlobalScope) {
    let df = parse(text).unwrap();
    let args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let g = GlobalScope::new(&df.instructions, df.directives.escape, &args, &auto()).unwrap();
    (df, g)
}

/// The scope after running every instruction of stage `stage` up to (not including) `upto`.
fn stage_vars(df: &berth_dockerfile::Dockerfile, g: &GlobalScope, stage: usize) -> Vars {
    let graph = StageGraph::new(df, g).unwrap();
    let mut scope = StageScope::new(g, Vars::new());
    for i in graph.stages[stage].body.clone() {
        scope.apply(&df.instructions[i]).unwrap();
    }
    scope.vars().clone()
}

#[test]
fn global_args_expand_in_from_with_defaults_and_build_args() {
    let text = "ARG REGISTRY=docker.io\nARG IMAGE=library/busybox\nARG TAG=1.36\nARG REF=${REGISTRY}/${IMAGE}:${TAG}\nFROM ${REF}\nFROM $IMAGE:$TAG AS b\n";
    let (df, g) = global(text, &[]);
    let graph = StageGraph::new(&df, &g).unwrap();
    assert_eq!(
        graph.stages[0].base,
        Base::Image("docker.io/library/busybox:1.36".into())
    );
    assert_eq!(
        graph.stages[1].base,
        Base::Image("library/busybox:1.36".into())
    );
    let (df, g) = global(text, &[("TAG", "1.37"), ("REGISTRY", "ghcr.io")]);
    let graph = StageGraph::new(&df, &g).unwrap();
    assert_eq!(
        graph.stages[0].base,
        Base::Image("ghcr.io/library/busybox:1.37".into())
    );
}

#[test]
fn automatic_platform_args_are_global_but_need_a_declaration_inside_a_stage() {
    let text = "FROM --platform=$BUILDPLATFORM busybox AS b\nRUN echo $TARGETARCH\nARG TARGETARCH\nENV ARCH=$TARGETARCH\n";
    let (df, g) = global(text, &[]);
    let graph = StageGraph::new(&df, &g).unwrap();
    assert_eq!(graph.stages[0].platform.as_deref(), Some("linux/amd64"));
    let graph_stage = &graph.stages[0];
    let mut scope = StageScope::new(&g, Vars::new());
    // Before the ARG, the stage does not see TARGETARCH.
    assert_eq!(scope.expand("[$TARGETARCH]").unwrap(), "[]");
    for i in graph_stage.body.clone() {
        scope.apply(&df.instructions[i]).unwrap();
    }
    assert_eq!(scope.vars().get("ARCH"), Some("arm64"));
    assert_eq!(scope.image_env().get("ARCH"), Some("arm64"));
    assert_eq!(
        scope.image_env().get("TARGETARCH"),
        None,
        "ARGs are not image ENV"
    );
    assert_eq!(g.get("TARGETVARIANT"), Some("v8"));
}

#[test]
fn a_global_arg_redeclared_in_a_stage_keeps_its_global_value() {
    let text = "ARG V=1.0\nFROM busybox\nARG V\nENV A=$V\nFROM busybox\nENV A=${V:-unset}\n";
    let (df, g) = global(text, &[]);
    assert_eq!(stage_vars(&df, &g, 0).get("A"), Some("1.0"));
    assert_eq!(stage_vars(&df, &g, 1).get("A"), Some("unset"));
    let (df, g) = global(text, &[("V", "2.0")]);
    assert_eq!(stage_vars(&df, &g, 0).get("A"), Some("2.0"));
}

#[test]
fn env_words_expand_against_the_scope_before_the_instruction() {
    let text = "FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\nARG X=\"a b\"\nENV Y=${X}-${abc}\n";
    let (df, g) = global(text, &[]);
    let v = stage_vars(&df, &g, 0);
    assert_eq!(v.get("def"), Some("hello"));
    assert_eq!(v.get("ghi"), Some("bye"));
    assert_eq!(v.get("X"), Some("a b"));
    assert_eq!(v.get("Y"), Some("a b-bye"));
}

#[test]
fn a_build_arg_wins_over_a_stage_default_and_env_wins_later() {
    let text = "FROM busybox\nARG MODE=debug\nENV M1=$MODE\nENV MODE=forced\nENV M2=$MODE\n";
    let (df, g) = global(text, &[("MODE", "release")]);
    let v = stage_vars(&df, &g, 0);
    assert_eq!(v.get("M1"), Some("release"));
    assert_eq!(v.get("M2"), Some("forced"));
}

#[test]
fn stage_graph_links_bases_copies_and_mounts() {
    let text = "\
FROM golang:1.22 AS Build
RUN go build
FROM build AS test
RUN --mount=type=bind,from=build,target=/src go test
FROM alpine AS tools
FROM scratch AS final
COPY --from=build /out/app /app
COPY --from=2 /bin/sh /bin/sh
COPY --from=nginx:1.25 /etc/nginx /etc/nginx
FROM final
";
    let (df, g) = global(text, &[]);
    let graph = StageGraph::new(&df, &g).unwrap();
    assert_eq!(graph.stages.len(), 5);
    assert_eq!(graph.stages[0].name.as_deref(), Some("build"));
    assert_eq!(graph.stages[1].base, Base::Stage(0));
    assert_eq!(graph.stages[3].base, Base::Scratch);
    assert_eq!(graph.stages[4].base, Base::Stage(3));
    assert_eq!(
        graph.stages[1].stage_deps().into_iter().collect::<Vec<_>>(),
        vec![0]
    );
    assert_eq!(
        graph.stages[3].stage_deps().into_iter().collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(
        graph.required(graph.target(None).unwrap()),
        vec![0, 2, 3, 4]
    );
    assert_eq!(
        graph.required(graph.target(Some("TEST")).unwrap()),
        vec![0, 1]
    );
    assert_eq!(
        graph.required(graph.target(Some("tools")).unwrap()),
        vec![2]
    );
    assert!(matches!(
        graph.target(Some("nope")),
        Err(StageError::UnknownTarget(_))
    ));
    assert!(matches!(
        df.instructions[graph.stages[0].from].command,
        Command::From(_)
    ));
}

#[test]
fn stage_graph_errors() {
    for (text, want) in [
        ("RUN echo\nFROM busybox\n", "no build stage"),
        ("FROM a AS x\nFROM b AS X\n", "duplicate stage name"),
        ("ARG B\nFROM ${B}\n", "should not be blank"),
        (
            "FROM a AS one\nCOPY --from=two /a /b\nFROM b AS two\n",
            "needs to be defined before",
        ),
        ("FROM a AS one\nCOPY --from=one /a /b\n", "itself"),
        ("FROM a\nCOPY --from=0 /a /b\n", "invalid stage index"),
    ] {
        let (df, g) = global(text, &[]);
        let err = StageGraph::new(&df, &g).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
}
