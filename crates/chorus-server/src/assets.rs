//! The demo page, the JavaScript SDK and its bindings, embedded in the
//! binary, so that `chorus serve` alone shows two browser tabs editing
//! together, and a page anywhere can use the SDK without a build step.
//!
//! Everything is plain ES modules, served as it is in the repository:
//! `/sdk/chorus.js` and its siblings from `clients/js/src`, the vendored ES
//! module build of `ot-text-unicode` under `/sdk/vendor/`, and the bindings
//! under `/sdk/textarea/`, `/sdk/codemirror/` and `/sdk/react/` from their
//! packages' `src`. A page maps the packages' names to these paths with an
//! import map (the demo's `index.html` does; the README shows one). Nothing
//! is bundled or rewritten here. The `/sdk/` files are public code, served
//! to any origin (`Access-Control-Allow-Origin: *`): a browser fetches
//! module scripts with CORS, so a page of another origin could not import
//! them otherwise.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use include_dir::{include_dir, Dir};

static DEMO: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/demo");
static SDK: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/js/src");
static VENDOR: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/js/vendor");
static TEXTAREA: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/textarea/src");
static CODEMIRROR: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/codemirror/src");
static REACT: Dir = include_dir!("$CARGO_MANIFEST_DIR/../../clients/react/src");

/// The folders under `/sdk/`: the OT library's build and the bindings.
fn sdk_folder(name: &str) -> Option<&'static Dir<'static>> {
    match name {
        "vendor" => Some(&VENDOR),
        "textarea" => Some(&TEXTAREA),
        "codemirror" => Some(&CODEMIRROR),
        "react" => Some(&REACT),
        _ => None,
    }
}

/// `GET /`: the demo page.
pub async fn index() -> Response {
    serve(&DEMO, "index.html", false)
}

/// `GET /demo/{file}`.
pub async fn demo(Path(file): Path<String>) -> Response {
    serve(&DEMO, &file, false)
}

/// `GET /sdk/{file}`: the SDK.
pub async fn sdk(Path(file): Path<String>) -> Response {
    serve(&SDK, &file, true)
}

/// `GET /sdk/{folder}/{file}`: the vendored OT library and the bindings.
pub async fn sdk_folder_file(Path((folder, file)): Path<(String, String)>) -> Response {
    match sdk_folder(&folder) {
        Some(dir) => serve(dir, &file, true),
        None => (StatusCode::NOT_FOUND, format!("no such folder: /sdk/{folder}/\n")).into_response(),
    }
}

/// A file of `dir`; `public` adds the CORS header that lets any origin import it.
fn serve(dir: &'static Dir<'static>, name: &str, public: bool) -> Response {
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
    let mut response = ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], file.contents()).into_response();
    if public {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, header::HeaderValue::from_static("*"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_the_sdk_and_the_bindings_are_embedded() {
        assert!(DEMO.get_file("index.html").is_some());
        assert!(SDK.get_file("chorus.js").is_some());
        for folder in ["vendor", "textarea", "codemirror", "react"] {
            let dir = sdk_folder(folder).expect("a folder under /sdk/");
            let entry = if folder == "vendor" { "ot-text-unicode.js" } else { "index.js" };
            assert!(dir.get_file(entry).is_some(), "/sdk/{folder}/{entry} is embedded");
        }
        let page = std::str::from_utf8(DEMO.get_file("index.html").unwrap().contents()).unwrap();
        assert!(page.contains("/sdk/vendor/ot-text-unicode.js"), "the page maps the OT library to the vendored build");
        assert!(page.contains("/sdk/textarea/index.js"), "the page maps the textarea binding to its /sdk/ copy");
    }
}
