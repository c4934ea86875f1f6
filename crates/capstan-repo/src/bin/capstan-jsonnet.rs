//! `capstan-jsonnet REQUEST_FILE`: evaluates a source's Jsonnet files for a repo-server, in a
//! process of its own (see `capstan_repo::render::jsonnet_child`). Not meant to be run by hand.

fn main() {
    let Some(request) = std::env::args_os().nth(1) else {
        eprintln!("usage: capstan-jsonnet REQUEST_FILE (run by the repo-server, not by hand)");
        std::process::exit(2);
    };
    std::process::exit(capstan_repo::render::jsonnet_child::child_main(
        std::path::Path::new(&request),
    ));
}
