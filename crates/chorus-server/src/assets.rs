//! The demo page and the JavaScript SDK, embedded in the binary, so that
//! `chorus serve` alone shows two browser tabs editing together.
//!
//! The SDK is plain ES modules: the browser loads `/sdk/chorus.js` and its
//! siblings as they are in `clients/js/src`, and maps the bare specifier
//! `ot-text-unicode` to the vendored ES module build under `/sdk/vendor/`
//! with an import map. Nothing is bundled or rewritten here.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static DEMO: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/demo");
static SDK: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/js/src");
static VENDOR: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/js/vendor");

/// `GET /`: the demo page.
pub async fn index() -> Response {
    serve(&DEMO, "index.html")
}

/// `GET /demo/{file}`.
pub async fn demo(Path(file): Path<String>) -> Response {
    serve(&DEMO, &file)
}

/// `GET /sdk/{file}`.
pub async fn sdk(Path(file): Path<String>) -> Response {
    serve(&SDK, &file)
}

/// `GET /sdk/vendor/{file}`.
pub async fn vendor(Path(file): Path<String>) -> Response {
    serve(&VENDOR, &file)
}

fn serve(dir: &'static Dir<'static>, name: &str) -> Response {
    let Some(file) = dir.get_file(name).filter(|_| !name.contains("..")) else {
        return (StatusCode::NOT_FOUND, format!("no such file: {name}\n")).into_response();
    };
    let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    // Small files, served from memory: revalidating costs nothing and a
    // new binary's page is never mixed with an old cached SDK.
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], file.contents()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_and_the_sdk_are_embedded() {
        assert!(DEMO.get_file("index.html").is_some());
        assert!(SDK.get_file("chorus.js").is_some());
        assert!(VENDOR.get_file("ot-text-unicode.js").is_some());
        let page = std::str::from_utf8(DEMO.get_file("index.html").unwrap().contents()).unwrap();
        assert!(page.contains("/sdk/vendor/ot-text-unicode.js"), "the page maps the OT library to the vendored build");
    }
}
