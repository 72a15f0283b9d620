//! The console's stylesheet, script and icon, compiled into the binary: the console works
//! offline and needs no build step beyond `cargo build`.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// How long a browser may reuse an asset without asking again, seconds.
const ASSET_MAX_AGE: u32 = 300;

/// Every asset: name, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/console.js"),
    ),
    ("favicon.svg", "image/svg+xml", include_bytes!("assets/favicon.svg")),
];

/// `GET /ui/assets/{name}`: served to anyone (they hold no data), so the login page is
/// styled too.
pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, bytes)) => HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, *content_type))
            .insert_header((header::CACHE_CONTROL, format!("max-age={ASSET_MAX_AGE}")))
            .body(*bytes),
        None => HttpResponse::NotFound().finish(),
    }
}
