//! Any bytes through every layer that reads a Dockerfile: the parser, the stage graph and
//! scopes, the word lexer, the .dockerignore matcher, the shell parser and the linter. None may
//! panic, loop or blow the stack.
#![no_main]

use std::collections::BTreeMap;

use berth_dockerfile::{GlobalScope, PlatformParts, StageGraph, StageScope, Vars, platform_args};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(df) = berth_dockerfile::parse(text) {
        let p = PlatformParts {
            os: "linux".into(),
            arch: "arm64".into(),
            variant: "v8".into(),
        };
        let auto = platform_args(&p, &p);
        if let Ok(global) =
            GlobalScope::new(&df.instructions, df.directives.escape, &BTreeMap::new(), &auto)
            && let Ok(graph) = StageGraph::new(&df, &global)
        {
            for stage in &graph.stages {
                let mut scope = StageScope::new(&global, Vars::new());
                for i in stage.body.clone() {
                    let _ = scope.apply(&df.instructions[i]);
                }
            }
            if let Ok(t) = graph.target(None) {
                let _ = graph.required(t);
            }
        }
    }
    let lexer = berth_dockerfile::expand::Lexer::new('\\');
    let env: Vec<(String, String)> = vec![("A".into(), "x y".into()), ("EMPTY".into(), String::new())];
    let _ = lexer.process_word(text, &env);
    let _ = lexer.process_words(text, &env);
    if let Ok(ignore) = berth_dockerfile::ignore::DockerIgnore::parse(text) {
        let _ = ignore.is_excluded("a/b/c.txt");
        let _ = ignore.is_excluded(text);
    }
    let _ = berth_lint::shell::parse(text);
    let _ = berth_lint::lint(text, &berth_lint::Config::default());
});
