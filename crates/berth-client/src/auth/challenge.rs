//! `WWW-Authenticate` (RFC 9110 §11.6.1) as registries send it:
//! `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`
//! or `Basic realm="Registry"`.

use crate::ClientError;

/// The authentication scheme a registry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// HTTP Basic with the registry credentials.
    Basic,
    /// A bearer token fetched from `realm`.
    Bearer,
}

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Basic or Bearer.
    pub scheme: Scheme,
    /// `realm` (for Bearer: the token endpoint URL).
    pub realm: Option<String>,
    /// `service`, passed back to the token endpoint.
    pub service: Option<String>,
    /// `scope`, space-separated scopes the registry wants.
    pub scope: Option<String>,
    /// `error`, when the registry says why a token was refused (`insufficient_scope`, …).
    pub error: Option<String>,
}

impl Challenge {
    /// Parses the first challenge of a scheme berth supports (Bearer preferred over Basic when
    /// a header offers both).
    pub fn parse(header: &str) -> Result<Self, ClientError> {
        let mut found: Vec<Challenge> = Vec::new();
        let mut rest = header.trim();
        loop {
            let (scheme_name, after) = split_token(rest);
            if scheme_name.is_empty() {
                break;
            }
            rest = after.trim_start();
            let mut c = Challenge {
                scheme: Scheme::Basic,
                realm: None,
                service: None,
                scope: None,
                error: None,
            };
            // auth-params: name=value or name="quoted", comma-separated, up to the next scheme.
            loop {
                let (name, after_name) = split_token(rest);
                let Some(value_part) = after_name.trim_start().strip_prefix('=') else {
                    break; // not a parameter: the next challenge (or a token68, or the end)
                };
                let (value, after_value) = parse_value(value_part.trim_start())
                    .ok_or_else(|| ClientError::Challenge(clip(header)))?;
                match name.to_ascii_lowercase().as_str() {
                    "realm" => c.realm = Some(value),
                    "service" => c.service = Some(value),
                    "scope" => c.scope = Some(value),
                    "error" => c.error = Some(value),
                    _ => {}
                }
                rest = after_value.trim_start();
                match rest.strip_prefix(',') {
                    Some(r) => rest = r.trim_start(),
                    None => break,
                }
            }
            match scheme_name.to_ascii_lowercase().as_str() {
                "bearer" => found.push(Challenge {
                    scheme: Scheme::Bearer,
                    ..c
                }),
                "basic" => found.push(c),
                _ => {} // a scheme berth does not speak
            }
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        let pick = found
            .iter()
            .position(|c| c.scheme == Scheme::Bearer)
            .or_else(|| found.iter().position(|c| c.scheme == Scheme::Basic));
        let Some(i) = pick else {
            return Err(ClientError::Challenge(clip(header)));
        };
        let c = found.swap_remove(i);
        if c.scheme == Scheme::Bearer && c.realm.is_none() {
            return Err(ClientError::Challenge(format!(
                "Bearer challenge without a realm: {}",
                clip(header)
            )));
        }
        Ok(c)
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// A token (RFC 9110 `token` characters) and what follows it.
fn split_token(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
        .unwrap_or(s.len());
    (&s[..end], &s[end..])
}

/// A quoted string (with `\` escapes) or a token; the value and what follows it.
fn parse_value(s: &str) -> Option<(String, &str)> {
    if let Some(body) = s.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Some((out, &body[i + 1..])),
                '\\' => out.push(chars.next()?.1),
                c => out.push(c),
            }
        }
        None // unterminated
    } else {
        // Unquoted values may contain '/' and ':' in practice (realms); stop at ',' or space.
        let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
        Some((s[..end].to_owned(), &s[end..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .expect("parses");
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.realm.as_deref(), Some("https://auth.docker.io/token"));
        assert_eq!(c.service.as_deref(), Some("registry.docker.io"));
        assert_eq!(c.scope.as_deref(), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn basic_escapes_errors_and_several_challenges() {
        let c = Challenge::parse(r#"Basic realm="My \"Registry\"""#).expect("parses");
        assert_eq!(c.scheme, Scheme::Basic);
        assert_eq!(c.realm.as_deref(), Some(r#"My "Registry""#));
        let c = Challenge::parse(
            r#"Bearer realm="https://r/token",error="insufficient_scope",scope="repository:a:pull repository:b:pull""#,
        )
        .expect("parses");
        assert_eq!(c.error.as_deref(), Some("insufficient_scope"));
        assert_eq!(
            c.scope.as_deref(),
            Some("repository:a:pull repository:b:pull")
        );
        // Basic and Bearer offered: Bearer wins; unknown schemes are skipped.
        let c = Challenge::parse(
            r#"Negotiate abc, Basic realm="x", Bearer realm="https://t",service=s"#,
        )
        .expect("parses");
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.service.as_deref(), Some("s"));
        let c =
            Challenge::parse("basic realm=Registry").expect("case-insensitive scheme, token value");
        assert_eq!(c.realm.as_deref(), Some("Registry"));
    }

    #[test]
    fn refuses_what_cannot_be_used() {
        assert!(Challenge::parse("").is_err());
        assert!(Challenge::parse("Negotiate").is_err());
        assert!(
            Challenge::parse(r#"Bearer service="x""#).is_err(),
            "no realm"
        );
        assert!(Challenge::parse(r#"Bearer realm="unterminated"#).is_err());
    }
}
