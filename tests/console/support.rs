//! The real browser: Debian's `chromium`, headless, driven through one shared `chromedriver`
//! (WebDriver) started on a free 127.0.0.1 port.
//!
//! Every browser test takes [`lock`] first: the tests of this binary then run one at a time
//! (one chromium at a time on a 2-core machine, and the 1-second figure is not measured while
//! another chromium starts). Without the browser a test returns early after a notice, unless
//! `CCR_BROWSER_TESTS=required` (set by `cargo xtask test`), which makes it fail instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// Longest wait for anything in the page; a test that needs longer is broken.
pub const WAIT: Duration = Duration::from_secs(15);
/// How often the DOM is polled while waiting.
pub const POLL: Duration = Duration::from_millis(10);
/// The desktop window.
pub const DESKTOP: (u32, u32) = (1280, 900);
/// A phone (iPhone 12–15 width).
pub const PHONE: (u32, u32) = (390, 844);

/// The command that installs the browser and runs these tests.
const RUN_THEM: &str = "cargo xtask test";

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/console-screenshots");
    dir
}

/// The two binaries, from `PATH` or Debian's `/usr/bin`.
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    Some((find("chromium")?, find("chromedriver")?))
}

/// True when the browser tests must run (`CCR_BROWSER_TESTS=required`).
fn required() -> bool {
    std::env::var("CCR_BROWSER_TESTS").is_ok_and(|v| v == "required")
}

/// The shared chromedriver: its port and the chromium binary it starts.
struct Driver {
    port: u16,
    chromium: PathBuf,
}

/// Start chromedriver once per test binary; `None` when it is not installed (see the module doc).
fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let Some((chromium, chromedriver)) = binaries() else {
                if required() {
                    panic!(
                        "CCR_BROWSER_TESTS=required but chromium or chromedriver is not installed \
                         (Debian packages `chromium` and `chromium-driver`); `{RUN_THEM}` installs them"
                    );
                }
                return None;
            };
            let port = start_chromedriver(&chromedriver);
            Some(Driver { port, chromium })
        })
        .as_ref()
}

/// Spawn chromedriver on port 0 from a thread that lives as long as the test binary, read the
/// port it chose from its first lines, and wait until its `/status` says ready.
///
/// The child gets `PR_SET_PDEATHSIG = SIGKILL`: it dies with that thread, i.e. when the test
/// process exits, however it exits (a static is never dropped).
fn start_chromedriver(path: &Path) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel::<Result<u16, String>>();
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("chromedriver".into())
        .spawn(move || {
            let mut cmd = Command::new(&path);
            cmd.args(["--port=0", "--log-level=WARNING"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(format!("cannot start {}: {e}", path.display())));
                    return;
                }
            };
            let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
            let mut seen = String::new();
            let mut port = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                // "ChromeDriver was started successfully on port 34567."
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                    break;
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            let _ = tx.send(port.ok_or(format!(
                "chromedriver exited without saying its port; it printed:\n{seen}"
            )));
            // Keep draining its stdout so it never blocks on a full pipe, then keep this
            // thread (the child's "parent" for PDEATHSIG) alive until the process exits.
            for _ in lines {}
            let status = child.wait();
            eprintln!("chromedriver exited: {status:?}");
            loop {
                std::thread::park();
            }
        })
        .expect("spawn the chromedriver thread");
    let port = rx
        .recv_timeout(WAIT)
        .expect("chromedriver says its port within 15 s")
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = http_blocking(port, "GET", "/status") {
            if status["value"]["ready"] == true {
                return port;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver on port {port} not ready within 15 s"
        );
        std::thread::sleep(POLL);
    }
}

/// A tiny blocking HTTP/1.1 request to chromedriver; its JSON body, if any.
///
/// chromedriver keeps the connection open whatever the request says, so the body is read
/// up to its `Content-Length`, not to the end of the stream.
fn http_blocking(port: u16, method: &str, path: &str) -> Option<Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).ok()?;
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            if len.is_some_and(|len| body.len() >= len) || n == 0 {
                return serde_json::from_str(body).ok();
            }
        }
        if n == 0 {
            return None;
        }
    }
}

/// Held by a browser test for its whole run: the tests of this binary run one at a time.
pub struct Turn {
    _guard: tokio::sync::MutexGuard<'static, ()>,
    driver: &'static Driver,
}

/// Wait for this test's turn; `None` (after a notice, once) when the browser is not installed
/// and not required: the caller returns and passes.
pub async fn lock() -> Option<Turn> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    static NOTICE: Once = Once::new();
    let guard = LOCK.lock().await;
    let Some(driver) = driver() else {
        NOTICE.call_once(|| {
            // Straight to the stderr stream: libtest captures eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "browser tests skipped: chromium/chromedriver not installed; \
                 `{RUN_THEM}` installs them and runs these tests"
            );
        });
        return None;
    };
    Some(Turn {
        _guard: guard,
        driver,
    })
}

/// One headless chromium window on the app at `base`.
pub struct Browser {
    pub c: Client,
    /// The app's origin, `http://127.0.0.1:PORT`.
    pub base: String,
    port: u16,
    session: String,
    closed: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (own profile: no cookies) with a `size` window, for the app at `base`.
    pub async fn open(turn: &Turn, base: &str, size: (u32, u32)) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": turn.driver.chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={},{}", size.0, size.1),
                ],
            },
        }))
        .expect("capabilities");
        let started = Instant::now();
        let c = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", turn.driver.port))
            .await
            .expect("chromedriver starts a chromium session");
        let session = c
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        eprintln!("chromium session started in {:?}", started.elapsed());
        let b = Browser {
            c,
            base: base.trim_end_matches('/').to_owned(),
            port: turn.driver.port,
            session,
            closed: false,
            _profile: profile,
        };
        b.resize(size).await;
        b
    }

    /// Make the page's viewport `size` (the window is sized so that its inside is `size`).
    pub async fn resize(&self, size: (u32, u32)) {
        self.c
            .set_window_size(size.0, size.1)
            .await
            .expect("set window size");
        let inner = self
            .js("return [window.innerWidth, window.innerHeight]")
            .await;
        let got = (
            inner[0].as_i64().unwrap_or(0),
            inner[1].as_i64().unwrap_or(0),
        );
        let want = (i64::from(size.0), i64::from(size.1));
        if got != want && got.0 > 0 && got.1 > 0 {
            // Window decorations, if any: grow the window by the difference once.
            let w = (2 * want.0 - got.0).max(1) as u32;
            let h = (2 * want.1 - got.1).max(1) as u32;
            self.c.set_window_size(w, h).await.expect("set window size");
        }
    }

    /// Go to `path` on the app.
    pub async fn goto(&self, path: &str) {
        self.c
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("goto {path}: {e}"));
    }

    /// The current URL's path.
    pub async fn path(&self) -> String {
        self.c.current_url().await.expect("url").path().to_owned()
    }

    /// Run `script` (it should `return` something); its value.
    pub async fn js(&self, script: &str) -> Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Run `script` with `arguments[0..]` = `args`; its value.
    pub async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.c
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// How many elements match `css` and are rendered (have a box), now.
    pub async fn visible(&self, css: &str) -> usize {
        let n = self
            .js_with(
                "return [...document.querySelectorAll(arguments[0])]\
                 .filter(e => e.getClientRects().length > 0).length",
                vec![json!(css)],
            )
            .await;
        n.as_u64().expect("a count") as usize
    }

    /// The `textContent` of the first element at `css` (waiting for it).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        let t = self
            .js_with(
                "return document.querySelector(arguments[0]).textContent",
                vec![json!(css)],
            )
            .await;
        t.as_str().unwrap_or_default().to_owned()
    }

    /// Run async `script`, which calls `done(value)` (the last argument); that value.
    pub async fn js_async(&self, script: &str) -> Value {
        let script = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.c
            .execute_async(&script, vec![])
            .await
            .unwrap_or_else(|e| panic!("async script failed: {e}\n{script}"))
    }

    /// The element at `css`, waiting for it up to [`WAIT`].
    pub async fn find(&self, css: &str) -> Element {
        self.find_within(css, WAIT).await
    }

    /// The element at `css`, waiting for it up to `limit`.
    pub async fn find_within(&self, css: &str, limit: Duration) -> Element {
        match self
            .c
            .wait()
            .at_most(limit)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self.c.current_url().await.map(|u| u.to_string());
                let body = self
                    .c
                    .execute(
                        "return document.body ? document.body.outerHTML.slice(0, 4000) : ''",
                        vec![],
                    )
                    .await
                    .ok();
                panic!(
                    "no element `{css}` within {limit:?}: {e}\nurl: {url:?}\nbody: {}",
                    body.as_ref().and_then(Value::as_str).unwrap_or("?")
                )
            }
        }
    }

    /// Every element at `css` now (no wait).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.c.find_all(Locator::Css(css)).await.expect("find_all")
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.all(css).await.len()
    }

    /// Wait until `script` (an expression) is truthy; panics with `what` after [`WAIT`].
    pub async fn until(&self, what: &str, expr: &str) {
        self.until_within(what, expr, WAIT).await
    }

    /// Wait until `expr` is truthy, up to `limit`.
    pub async fn until_within(&self, what: &str, expr: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        let script = format!("return !!({expr});");
        loop {
            if self.js(&script).await == true {
                return;
            }
            if Instant::now() >= deadline {
                let body = self
                    .js("return document.body ? document.body.outerHTML.slice(0, 4000) : ''")
                    .await;
                panic!(
                    "timed out after {limit:?} waiting for {what} (`{expr}`)\nbody: {}",
                    body.as_str().unwrap_or("?")
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Click the element at `css` (waiting for it).
    ///
    /// The inbox re-renders its rows on every live event, so an element found a moment ago
    /// may be gone ("stale"): find it again and retry, up to [`WAIT`].
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!("click `{css}`: {e}"),
            }
        }
    }

    /// Type `text` into the element at `css` (waiting for it; retried like [`Browser::click`]).
    pub async fn type_into(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.find(css).await.send_keys(text).await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!("type into `{css}`: {e}"),
            }
        }
    }

    /// Attribute `name` of the first element at `css` (waiting for it).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await;
        let v = self
            .js_with(
                "return document.querySelector(arguments[0]).getAttribute(arguments[1])",
                vec![json!(css), json!(name)],
            )
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Sign in with `token` through the sign-in form; waits for the signed-in page.
    pub async fn sign_in(&self, token: &str) {
        self.goto("/ui/sign-in").await;
        self.type_into("form#sign-in input#token[name=token][type=password]", token)
            .await;
        self.click("button#sign-in-submit").await;
        self.find("body[data-role]").await;
    }

    /// Save a PNG of the viewport as `target/console-screenshots/{name}.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.c.screenshot().await.expect("screenshot");
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// End the session (chromium exits).
    pub async fn close(mut self) {
        self.closed = true;
        let c = self.c.clone();
        c.close().await.expect("close the browser session");
    }
}

impl Drop for Browser {
    /// A test that panicked never called [`Browser::close`]: end its chromium anyway.
    fn drop(&mut self) {
        if !self.closed {
            let _ = http_blocking(self.port, "DELETE", &format!("/session/{}", self.session));
        }
    }
}
