// Keeps docs/tutorial.md and these files in step: every Rust block the
// tutorial shows for a file must be that file (or, for main.rs, lines of
// it in order), so the code a reader copies is the code CI tests.

const TUTORIAL: &str = include_str!("../../docs/tutorial.md");

const FILES: [(&str, &str); 4] = [
    ("state.rs", include_str!("state.rs")),
    ("driver.rs", include_str!("driver.rs")),
    ("main.rs", include_str!("main.rs")),
    ("tests.rs", include_str!("tests.rs")),
];

/// The visible lines of each Rust block, with the file its hidden marker
/// line names and whether the block is the whole file.
fn shown_files() -> Vec<(String, bool, Vec<&'static str>)> {
    let mut blocks = Vec::new();
    let mut lines = TUTORIAL.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```rust") {
            continue;
        }
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let marker = body.iter().find_map(|l| {
            let whole = l.strip_prefix("# // file: ").map(|f| (f, true));
            whole.or_else(|| l.strip_prefix("# // part of: ").map(|f| (f, false)))
        });
        let Some((file, whole)) = marker else {
            continue;
        };
        // rustdoc hides lines that start with "# " or are just "#".
        let visible = body
            .into_iter()
            .filter(|l| !(l.trim_start().starts_with("# ") || l.trim() == "#"))
            .collect();
        blocks.push((file.to_owned(), whole, visible));
    }
    blocks
}

#[test]
fn every_file_the_tutorial_shows_matches_the_example() {
    let shown = shown_files();
    for (name, source) in FILES {
        let block = shown.iter().find(|(file, _, _)| file == name);
        let Some((_, whole, visible)) = block else {
            panic!("docs/tutorial.md shows no block for {name}");
        };
        let lines: Vec<&str> = source.lines().collect();
        if *whole {
            assert_eq!(visible, &lines, "docs/tutorial.md differs from {name}");
            continue;
        }
        let mut rest = lines.iter();
        for line in visible {
            assert!(
                rest.any(|l| l == line),
                "docs/tutorial.md shows {line:?}, which {name} lacks (or has elsewhere)"
            );
        }
    }
}
