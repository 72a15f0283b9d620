//! A headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`)
//! with a blocking face, so the tests read like the rest of the suite: one chromedriver
//! on a free loopback port and a fresh profile per test, both gone when the `Browser`
//! drops.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::common::under_ci;

/// How long chromedriver gets to answer on its port.
const DRIVER_START: Duration = Duration::from_secs(20);
/// How long a condition on a page may take to hold.
pub const PAGE_WAIT: Duration = Duration::from_secs(20);
/// The browser window, large enough for the overview's table.
const WINDOW: (u32, u32) = (1440, 900);
/// Where Debian installs the browser.
const CHROMIUM_CANDIDATES: [&str; 2] = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

/// A browser session on its own chromedriver.
pub struct Browser {
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// The browser, or `None` after printing one line when chromedriver or Chromium is not
/// installed; under CI (`ACTIONWARDEN_CI=1`) a missing browser fails the test instead.
pub fn browser_or_skip() -> Option<Browser> {
    let driver = find_in_path("chromedriver");
    let chromium = CHROMIUM_CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists());
    match (driver, chromium) {
        (Some(driver), Some(chromium)) => Some(Browser::start(&driver, &chromium)),
        _ if under_ci() => {
            panic!("chromedriver and chromium are required under CI (apt-get install chromium chromium-driver)")
        }
        _ => {
            // Straight to the stream, past the test harness's capture, so a plain
            // `cargo test` shows it.
            let _ = writeln!(std::io::stderr(), "skipped: chromedriver not installed");
            None
        }
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}

impl Browser {
    fn start(driver: &Path, chromium: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let profile = tempfile::tempdir().expect("browser profile dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let mut browser = Browser {
            client: None,
            runtime,
            driver,
            _profile: profile,
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while ureq::get(&format!("{url}/status")).call().is_err() {
            assert!(started.elapsed() < DRIVER_START, "chromedriver did not answer on {url}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": chromium, "args": args },
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!("an object"),
        };
        let client = browser.runtime.block_on(async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
                .expect("a WebDriver session")
        });
        browser.client = Some(client);
        browser
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        self.runtime
            .block_on(self.client().current_url())
            .expect("current URL")
            .to_string()
    }

    /// The text of the first element matching `css`, or `None` when there is none.
    pub fn text(&self, css: &str) -> Option<String> {
        self.runtime.block_on(async {
            match self.client().find(Locator::Css(css)).await {
                Ok(element) => element.text().await.ok(),
                Err(_) => None,
            }
        })
    }

    /// The texts of every element matching `css`.
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            for element in self.client().find_all(Locator::Css(css)).await.unwrap_or_default() {
                out.push(element.text().await.unwrap_or_default());
            }
            out
        })
    }

    /// An attribute of the first element matching `css`.
    pub fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.runtime.block_on(async {
            let element = self.client().find(Locator::Css(css)).await.ok()?;
            element.attr(name).await.ok().flatten()
        })
    }

    /// How many elements match `css`.
    pub fn count(&self, css: &str) -> usize {
        self.runtime
            .block_on(self.client().find_all(Locator::Css(css)))
            .map(|all| all.len())
            .unwrap_or(0)
    }

    /// Clicks the first element matching `css`.
    pub fn click(&self, css: &str) {
        self.runtime.block_on(async {
            let element = self
                .client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css} to click: {e}"));
            element.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
        });
    }

    /// Types `text` into the first element matching `css`.
    pub fn fill(&self, css: &str, text: &str) {
        self.runtime.block_on(async {
            let element = self
                .client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css} to fill: {e}"));
            element.clear().await.expect("clearing a field");
            element.send_keys(text).await.expect("typing");
        });
    }

    /// Resizes the window (a taller one for a screenshot of a long page).
    pub fn resize(&self, width: u32, height: u32) {
        self.runtime
            .block_on(self.client().set_window_size(width, height))
            .expect("resizing the window");
    }

    /// Runs a script in the page and returns its value.
    pub fn script(&self, code: &str) -> Value {
        self.runtime
            .block_on(self.client().execute(code, Vec::new()))
            .unwrap_or_else(|e| panic!("running {code}: {e}"))
    }

    /// Waits until the text of `css` satisfies `ok` (polling, `PAGE_WAIT` deadline);
    /// returns that text.
    pub fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            if let Some(text) = self.text(css).filter(|t| ok(t)) {
                return text;
            }
            assert!(
                started.elapsed() < PAGE_WAIT,
                "timed out waiting for {what}; {css} reads {:?} on {}",
                self.text(css),
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG of the window; also written to `$ACTIONWARDEN_SCREENSHOTS/NAME` when that
    /// directory is set (how the README's pictures are made).
    pub fn screenshot(&self, name: &str) -> Vec<u8> {
        let png = self.runtime.block_on(self.client().screenshot()).expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
        if let Some(dir) = std::env::var_os("ACTIONWARDEN_SCREENSHOTS") {
            std::fs::create_dir_all(&dir).expect("screenshot dir");
            std::fs::write(Path::new(&dir).join(name), &png).expect("writing the screenshot");
        }
        png
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
