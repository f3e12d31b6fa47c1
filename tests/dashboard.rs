//! The page at `/` in a real browser: Debian's headless Chromium driven over the
//! DevTools protocol (chromiumoxide), against daemons running in this process.
//!
//! What a user would check by eye is checked here: every chart draws points, nothing
//! goes to the console, no request leaves 127.0.0.1, the controls act (pause stops the
//! load, the override moves the target line) or say why they cannot, a running
//! search's progress shows, and a stored run's report renders its tables and charts.
//! Screenshots at desktop and phone widths, light and dark, are kept in the test's temp
//! directory (and copied to `$SOAKD_SCREENSHOT_DIR` when set: `scripts/screenshot.sh`).

mod common;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::{EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::{MediaTypeParams, ScreenshotParams};
use chromiumoxide::Page;
use common::*;
use futures::StreamExt;
use parking_lot::Mutex;
use soakd::capacity::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium with its own profile, closed when dropped.
struct Chrome {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    async fn launch() -> Chrome {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: install Debian's `chromium` package (scripts/test.sh does)"
        );
        let profile = tempfile::tempdir().unwrap();
        let cfg = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            // No network but loopback here: keep Chromium from reaching for Google.
            .args([
                "disable-gpu",
                "disable-quic",
                "disable-component-update",
                "disable-domain-reliability",
                "no-pings",
            ])
            .launch_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(cfg).await.expect("chromium starts");
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Chrome {
            browser,
            handler,
            _profile: profile,
        }
    }

    /// A new tab at `url`, with its console errors and requests recorded from the start.
    async fn open(&self, url: &str) -> (Page, Watch) {
        let page = self.browser.new_page("about:blank").await.unwrap();
        let watch = Watch::default();
        page.enable_log().await.unwrap();
        page.enable_runtime().await.unwrap();
        page.execute(chromiumoxide::cdp::browser_protocol::network::EnableParams::default())
            .await
            .unwrap();
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let mut thrown = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .unwrap();
        let w = watch.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(e) = console.next() => if e.r#type == ConsoleApiCalledType::Error {
                        w.errors.lock().push(format!("console.error: {:?}", e.args.iter().map(|a| a.value.clone()).collect::<Vec<_>>()));
                    },
                    Some(e) = thrown.next() => w.errors.lock().push(format!("exception: {:?}", e.exception_details)),
                    Some(e) = log.next() => if e.entry.level == LogEntryLevel::Error {
                        w.errors.lock().push(format!("log: {} {}", e.entry.text, e.entry.url.clone().unwrap_or_default()));
                    },
                    Some(e) = requests.next() => w.requests.lock().push(e.request.url.clone()),
                    else => break,
                }
            }
        });
        page.goto(url).await.unwrap();
        (page, watch)
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        self.handler.abort();
        if let Some(child) = self.browser.get_mut_child() {
            let _ = child.as_mut_inner().start_kill();
        }
    }
}

/// What a tab did: console errors and every URL it requested.
#[derive(Clone, Default)]
struct Watch {
    errors: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Watch {
    /// No console error, and every request went to `origin` (or is inline data).
    fn assert_clean(&self, origin: &str) {
        let errors = self.errors.lock().clone();
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        let requests = self.requests.lock().clone();
        assert!(!requests.is_empty(), "no requests seen at all");
        let away: Vec<&String> = requests
            .iter()
            .filter(|u| !(u.starts_with(origin) || u.starts_with("data:") || u == &"about:blank"))
            .collect();
        assert!(away.is_empty(), "requests that left {origin}: {away:#?}");
    }
}

async fn js<T: serde::de::DeserializeOwned>(page: &Page, expr: &str) -> T {
    page.evaluate(expr)
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
        .into_value()
        .unwrap_or_else(|e| panic!("result of {expr}: {e}"))
}

/// Evaluates `expr` until it is true, or panics after `timeout` with `what`.
async fn wait_true(page: &Page, expr: &str, timeout: Duration, what: &str) {
    let end = Instant::now() + timeout;
    loop {
        let ok: bool = page
            .evaluate(expr)
            .await
            .ok()
            .and_then(|v| v.into_value().ok())
            .unwrap_or(false);
        if ok {
            return;
        }
        if Instant::now() > end {
            let charts: serde_json::Value = js(page, "window.soakd ? soakd.charts() : null").await;
            panic!("{what}: `{expr}` still false after {timeout:?}; charts: {charts}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {selector}: {e}"));
}

/// Saves a full-page screenshot into `dir` (and `$SOAKD_SCREENSHOT_DIR` when set).
async fn screenshot(page: &Page, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
        .await
        .unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() > 10_000,
        "{name} is blank"
    );
    if let Ok(out) = std::env::var("SOAKD_SCREENSHOT_DIR") {
        std::fs::create_dir_all(&out).unwrap();
        std::fs::copy(&path, Path::new(&out).join(name)).unwrap();
    }
    path
}

async fn phone_width(page: &Page, on: bool) {
    let (w, h, scale, mobile) = if on {
        (390, 844, 2.0, true)
    } else {
        (1280, 900, 1.0, false)
    };
    page.execute(SetDeviceMetricsOverrideParams::new(w, h, scale, mobile))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn two_scenarios(extra: &str) -> String {
    format!(
        r#"
targets:
  api: {{type: http, base_url: "${{TARGET}}"}}
scenarios:
  alpha:
    target: api
    max_in_flight: 50
    slo: {{p95: 200ms}}
    guard: {{for: 1h, step_down: 50%, floor: 10/s}}
    schedule: {{hold: {{rate: 100/s}}}}
    ops: {{get: {{weight: 1, http: {{path: /}}}}}}
  beta:
    target: api
    max_in_flight: 20
    slo: {{p95: 100ms, p99: 300ms}}
    schedule: {{hold: {{rate: 40/s}}}}
    ops: {{get: {{weight: 1, http: {{path: /}}}}}}
{extra}
"#
    )
}

/// The latest 1 s value of a scenario's series, from the history API.
async fn latest(addr: std::net::SocketAddr, scenario: &str, field: &str) -> Option<f64> {
    let h = try_json(&format!(
        "http://{addr}/api/v1/history?resolution=1s&since={}",
        soakd::events::now_ms() - 3000
    ))
    .await?;
    h["series"]
        .as_array()?
        .iter()
        .find(|s| s["group"] == "scenario" && s["name"] == scenario && s["field"] == field)?
        ["values"]
        .as_array()?
        .iter()
        .rev()
        .find_map(|v| v.as_f64())
}

const SCENARIO_CHARTS: [&str; 4] = ["rate", "latency", "errors", "inflight"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_draws_every_chart_and_its_controls_act() {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = serve(counting_router(count)).await;
    // gamma's writes are visible at once to its probe: a Visibility card.
    let gamma = "  gamma:\n    target: api\n    schedule: {hold: {rate: 10/s}}\n    ops:\n      put:\n        http: {path: /}\n        visibility: {target: api, http: {path: /}, every: 10ms, deadline: 2s}\n";
    let d = daemon(config(&two_scenarios(gamma), target));
    let addr = d.addr();
    let origin = format!("http://{addr}/");
    let shots = tempfile::tempdir().unwrap();
    let chrome = Chrome::launch().await;
    let opened = Instant::now();
    let (page, watch) = chrome.open(&origin).await;

    // Every chart of both scenarios, of gamma's visibility probes and of soakd itself
    // has data points.
    let mut ids: Vec<String> = ["alpha", "beta"]
        .iter()
        .flat_map(|s| SCENARIO_CHARTS.iter().map(move |c| format!("{s}-{c}")))
        .collect();
    ids.extend(["process-cpu".into(), "process-memory".into()]);
    ids.extend(["latency", "pending", "rates"].map(|c| format!("vis-gamma-{c}")));
    let want = serde_json::to_string(&ids).unwrap();
    wait_true(
        &page,
        &format!(
            "(() => {{ const c = soakd.charts(); return {want}.every(id => c.some(x => x.id === id && x.points > 0)); }})()"
        ),
        Duration::from_secs(30),
        "every chart draws points",
    )
    .await;
    let drawn: usize = js(&page, "document.querySelectorAll('.chart canvas').length").await;
    assert!(
        drawn >= ids.len(),
        "{drawn} canvases for {} charts",
        ids.len()
    );
    // The SLO is a line on the latency chart.
    let slo: f64 = js(&page, "soakd.last('beta-latency', 'SLO p95')").await;
    assert!((slo - 0.1).abs() < 1e-6, "{slo}");
    // And the rolling verdict is on the card: met or breached, objective by objective.
    wait_true(
        &page,
        r#"(() => { const c = document.querySelector('article.scenario[data-scenario="beta"] [data-role="slo"]');
            return !!c && /^SLO 5m (met|breached) p95 .+ ≤ .+, p99 .+ ≤ .+$/.test(c.textContent); })()"#,
        Duration::from_secs(10),
        "beta's card shows its rolling SLO",
    )
    .await;
    // alpha's guard (an hour out of its SLO before it acts) watches.
    wait_true(
        &page,
        r#"(() => { const g = document.querySelector('article.scenario[data-scenario="alpha"] [data-role="guard"]');
            return !!g && g.textContent === "guard watching"; })()"#,
        Duration::from_secs(10),
        "alpha's card shows its guard",
    )
    .await;

    // The page has been open (polling every second) while alpha ran at 100/s: the
    // sampler and the page's reads did not hold the load back.
    let held = Duration::from_secs(12).saturating_sub(opened.elapsed());
    tokio::time::sleep(held).await;
    let st = status(addr).await;
    let alpha = st["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "alpha")
        .unwrap()
        .clone();
    let achieved = alpha["achieved_rate"].as_f64().unwrap();
    assert!(
        achieved >= 90.0,
        "alpha achieved {achieved}/s of 100/s with the page open: {alpha}"
    );

    // Screenshots: desktop light and dark, and a phone, with nothing wider than it.
    screenshot(&page, shots.path(), "dashboard-desktop.png").await;
    page.emulate_media_features(vec![
        chromiumoxide::cdp::browser_protocol::emulation::MediaFeature::new(
            "prefers-color-scheme",
            "dark",
        ),
    ])
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    screenshot(&page, shots.path(), "dashboard-desktop-dark.png").await;
    page.emulate_media_type(MediaTypeParams::Null)
        .await
        .unwrap();
    page.emulate_media_features(vec![
        chromiumoxide::cdp::browser_protocol::emulation::MediaFeature::new(
            "prefers-color-scheme",
            "light",
        ),
    ])
    .await
    .unwrap();
    phone_width(&page, true).await;
    let overflow: f64 = js(
        &page,
        "document.documentElement.scrollWidth - document.documentElement.clientWidth",
    )
    .await;
    assert!(
        overflow <= 1.0,
        "the page is {overflow}px wider than a phone"
    );
    screenshot(&page, shots.path(), "dashboard-phone.png").await;
    phone_width(&page, false).await;

    // Pause: the state changes on the page and the achieved rate goes to 0 in the data.
    click(
        &page,
        "article[data-scenario='alpha'] button[data-role='pause']",
    )
    .await;
    wait_true(
        &page,
        "document.querySelector(\"article[data-scenario='alpha'] [data-role='state']\").textContent === 'paused'",
        Duration::from_secs(10),
        "alpha shows as paused",
    )
    .await;
    let zero = eventually(Duration::from_secs(10), || async {
        (latest(addr, "alpha", "achieved_rate").await? == 0.0).then_some(())
    })
    .await;
    assert!(
        zero.is_some(),
        "alpha's achieved rate did not drop to 0 in the history"
    );
    wait_true(
        &page,
        "soakd.last('alpha-rate', 'achieved') === 0",
        Duration::from_secs(10),
        "the page's achieved line reaches 0",
    )
    .await;
    let button: String = js(
        &page,
        "document.querySelector(\"article[data-scenario='alpha'] button[data-role='pause']\").textContent",
    )
    .await;
    assert_eq!(button, "Resume");

    // The override input moves beta's target line.
    let input = page
        .find_element("article[data-scenario='beta'] input[data-role='rate']")
        .await
        .unwrap();
    input.click().await.unwrap().type_str("7").await.unwrap();
    click(
        &page,
        "article[data-scenario='beta'] button[data-role='set-rate']",
    )
    .await;
    wait_true(
        &page,
        "soakd.last('beta-rate', 'target') === 7",
        Duration::from_secs(10),
        "beta's target line moves to the override",
    )
    .await;
    wait_true(
        &page,
        "document.querySelector(\"article[data-scenario='beta'] [data-role='state']\").textContent === 'overridden'",
        Duration::from_secs(5),
        "beta shows as overridden",
    )
    .await;
    let st = status(addr).await;
    let beta = st["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "beta")
        .unwrap()
        .clone();
    assert_eq!(beta["rate_override"], 7.0, "{beta}");
    // Both actions are on the time axis and in the event list.
    wait_true(
        &page,
        "document.querySelector('#events li[data-kind=pause]') !== null && document.querySelector('#events li[data-kind=override]') !== null",
        Duration::from_secs(5),
        "the pause and the override are listed as events",
    )
    .await;
    // Reload: this daemon's config is not from a file, so the daemon refuses and the
    // page says why instead of failing silently. The browser logs the refused request
    // (a 400) itself; that is the only console line allowed from here on.
    watch.assert_clean(&origin);
    click(&page, "#reload-btn").await;
    wait_true(
        &page,
        "(() => { const m = document.querySelector('#message'); return !m.hidden && m.classList.contains('error') && m.textContent.includes('cannot be reloaded'); })()",
        Duration::from_secs(10),
        "a refused reload shows the daemon's reason",
    )
    .await;
    screenshot(&page, shots.path(), "dashboard-controls.png").await;

    watch
        .errors
        .lock()
        .retain(|e| !(e.contains("status of 400") && e.ends_with("/-/reload")));
    watch.assert_clean(&origin);
    eprintln!("screenshots in {}", shots.path().display());
    // Kept for a look when the test fails; removed with the temp dir otherwise.
    drop(chrome);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_controls_say_why_a_search_shows_its_progress_and_reports_render() {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = serve(counting_router(count)).await;
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    std::fs::create_dir_all(&results).unwrap();
    // A stored run, as a finished search leaves it.
    let mut run: soakd::capacity::Run =
        serde_json::from_str(include_str!("data/sample-run.json")).unwrap();
    let stored_id = "20261122T000000Z-stored-0001".to_string();
    run.record.id = stored_id.clone();
    run.record.status = soakd::capacity::RunStatus::Running;
    run.record.finished_at = None;
    for l in &mut run.levels {
        l.run_id = stored_id.clone();
    }
    let store = Store::Jsonl(results.clone());
    store.create_run(&run.record).await.unwrap();
    for l in &run.levels {
        store.append_level(l).await.unwrap();
    }
    store.finish_run(&stored_id, 1_795_400_000.0).await.unwrap();

    let extra = format!(
        r#"results: {{dir: "{}"}}
search:
  name: browser
  every: 1h
  each: 4s
  warmup: 1s
  lag_limit: 2s
  scenarios:
    beta: {{levels: [10/s, 20/s, 30/s]}}
"#,
        results.display()
    );
    let d = daemon(config(&two_scenarios(&extra), target));
    let addr = d.addr();
    let chrome = Chrome::launch().await;

    // The same daemon behind a server that is not loopback-only and has no token: the
    // control API refuses mutations, so the page disables its controls and says why.
    let refusing = soakd::server::AppState {
        soak: None,
        deploys: None,
        engine: d.engine.clone(),
        loopback_only: false,
        search: None,
        results: Default::default(),
        history: d.history.clone(),
        config_path: None,
        slo: d.slo.clone(),
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a2 = l.local_addr().unwrap();
    tokio::spawn(soakd::server::serve(
        l,
        refusing,
        futures::future::pending(),
    ));
    let (page, watch) = chrome.open(&format!("http://{a2}/")).await;
    wait_true(
        &page,
        "(() => { const n = document.querySelector('#control-note'); return !n.hidden && n.textContent.includes('non-loopback'); })()",
        Duration::from_secs(15),
        "the reason the controls are off is shown",
    )
    .await;
    wait_true(
        &page,
        "(() => { const b = [...document.querySelectorAll('button.control, input.control')]; return b.length >= 7 && b.every(x => x.disabled); })()",
        Duration::from_secs(10),
        "every control is disabled",
    )
    .await;
    watch.assert_clean(&format!("http://{a2}/"));

    // The search on the daemon itself: its plan, level and state, and latency against
    // offered load as levels finish.
    let origin = format!("http://{addr}/");
    let (page, watch) = chrome.open(&origin).await;
    wait_true(
        &page,
        "(() => { const s = document.querySelector('#search'); return !s.hidden && s.textContent.includes('Capacity search browser') && s.textContent.includes('beta: 10, 20, 30 /s'); })()",
        Duration::from_secs(20),
        "the search's plan shows",
    )
    .await;
    wait_true(
        &page,
        "['warmup', 'measuring', 'cooldown', 'complete', 'scheduled'].includes(document.querySelector('[data-role=search-state]').textContent)",
        Duration::from_secs(20),
        "the search's state shows",
    )
    .await;
    wait_true(
        &page,
        "soakd.charts().some(c => c.id === 'search-latency' && c.points > 0) && document.querySelectorAll('#search table tr').length >= 2",
        Duration::from_secs(30),
        "a finished level is drawn and listed",
    )
    .await;
    // Once the run is done, the schedule (every 1h) shows the next start, an hour on.
    wait_true(
        &page,
        "(() => { const n = document.querySelector('[data-role=next-run]'); return n !== null && document.querySelector('[data-role=search-state]').textContent === 'scheduled' && /\\(in (59m|1h 0m)/.test(n.textContent); })()",
        Duration::from_secs(40),
        "the next scheduled run shows",
    )
    .await;
    // The stored runs are listed; the stored one's report renders as a page.
    wait_true(
        &page,
        &format!("document.querySelector(\"#runs a[href='/runs/{stored_id}']\") !== null"),
        Duration::from_secs(20),
        "the stored run is listed",
    )
    .await;
    watch.assert_clean(&origin);
    let (report, watch) = chrome
        .open(&format!("http://{addr}/runs/{stored_id}"))
        .await;
    wait_true(
        &report,
        "document.querySelectorAll('main.report table').length >= 2 && document.querySelectorAll('main.report figure.chart svg').length >= 2",
        Duration::from_secs(10),
        "the report has tables and inline charts",
    )
    .await;
    let text: String = js(&report, "document.querySelector('main.report').textContent").await;
    assert!(text.contains(&stored_id), "{text}");
    let shots = tempfile::tempdir().unwrap();
    screenshot(&report, shots.path(), "report.png").await;
    watch.assert_clean(&format!("http://{addr}/"));
    drop(chrome);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_api_is_incremental_bounded_and_can_be_off() {
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = serve(counting_router(count)).await;
    let d = daemon(config(&two_scenarios("dashboard: {keep_1s: 1m}"), target));
    let addr = d.addr();
    let get = |q: String| async move {
        let r = client()
            .get(format!("http://{addr}/api/v1/history{q}"))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, all) = get(String::new()).await;
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["capacity"], 60);
    let t: Vec<i64> = serde_json::from_value(all["t"].clone()).unwrap();
    assert!(t.len() >= 2, "{all}");
    assert!(t.windows(2).all(|w| w[1] - w[0] == 1000), "{t:?}");
    // Every series has one value per row.
    for s in all["series"].as_array().unwrap() {
        assert_eq!(s["values"].as_array().unwrap().len(), t.len(), "{s}");
    }
    // Since the newest row: nothing; since the one before: exactly the newest.
    let last = *t.last().unwrap();
    let (_, none) = get(format!("?since={last}")).await;
    assert!(none["t"].as_array().unwrap().len() <= 1, "{none}");
    let (_, one) = get(format!("?since={}&resolution=1s", t[t.len() - 2])).await;
    assert_eq!(one["t"][0], last, "{one}");
    // The stage events of both scenarios came with the first read.
    let kinds: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "stage").count(), 2, "{all}");
    // Bad resolution: 400 with the reason; the 1 min ring answers (empty for now).
    let (code, e) = get("?resolution=5s".into()).await;
    assert_eq!(
        (code, e["error"].as_str().unwrap()),
        (400, "resolution must be 1s or 1m")
    );
    let (code, e) = get("?since=yesterday".into()).await;
    assert_eq!(
        (code, e["error"].as_str().unwrap()),
        (400, "since must be a unix time in milliseconds")
    );
    let (code, m) = get("?resolution=1m".into()).await;
    assert_eq!((code, m["step_ms"].as_i64()), (200, Some(60_000)));
    d.shutdown(Duration::from_secs(5)).await;

    // With the dashboard off there is no history to serve.
    let d = daemon(config(
        &two_scenarios("dashboard: {enabled: false}"),
        target,
    ));
    let r = client()
        .get(format!("http://{}/api/v1/history", d.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(d.history.is_none());
    d.shutdown(Duration::from_secs(5)).await;
}

/// The "Soak health" card: a process the test starts leaks 1 MiB a second; its card
/// draws every series with points, and the leak's chart gets its trend band and the
/// `growing` badge within minutes; soakd's own series of the op are a table. Screenshots
/// at desktop and phone widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soak_card_shows_a_leak_with_its_trend_band_and_verdict() {
    let leak = Proc(
        std::process::Command::new("python3")
            .args([
                "-c",
                "import time\nheld = []\nwhile True:\n    held.append(b'x' * (1 << 20))\n    time.sleep(1)\n",
            ])
            .spawn()
            .expect("python3"),
    );
    let target = serve(counting_router(Arc::new(
        std::sync::atomic::AtomicU64::new(0),
    )))
    .await;
    let yaml = format!(
        r#"
targets:
  api: {{type: http, base_url: "${{TARGET}}", observe: {{pid: {}}}}}
scenarios:
  alpha:
    target: api
    schedule: {{hold: {{rate: 20/s}}}}
    ops: {{get: {{http: {{path: /}}}}}}
soak: {{window: 10m, warmup: 10s, resolution: 1s}}
"#,
        leak.0.id()
    );
    let d = daemon(config(&yaml, target));
    let origin = format!("http://{}/", d.addr());
    let shots = tempfile::tempdir().unwrap();
    let chrome = Chrome::launch().await;
    let (page, watch) = chrome.open(&origin).await;
    wait_true(
        &page,
        "(() => { const c = soakd.soak(); return c.some(x => x.id === 'api|rss_bytes' && x.points > 0 && x.drawn); })()",
        Duration::from_secs(40),
        "the target's card draws its memory",
    )
    .await;
    let title: String = js(
        &page,
        "document.querySelector('article.soak[data-target=\"api\"] h2').textContent",
    )
    .await;
    assert_eq!(title, "Soak health — api");
    // 10 s of warmup and 60 points, then the first verdict; the page reads every 10 s.
    wait_true(
        &page,
        "(() => { const c = soakd.soak().find(x => x.id === 'api|rss_bytes'); return !!c && c.verdict === 'growing' && c.band; })()",
        Duration::from_secs(200),
        "the leak reads growing, with its trend band",
    )
    .await;
    // Growing series come first on the card, and the evidence is under the chart.
    let first: String = js(
        &page,
        "document.querySelector('article.soak[data-target=\"api\"] .soak-series').dataset.verdict",
    )
    .await;
    assert_eq!(first, "growing");
    let why: String = js(
        &page,
        "document.querySelector('[data-soak=\"api|rss_bytes\"] [data-role=\"why\"]').textContent",
    )
    .await;
    assert!(why.starts_with("growing"), "{why}");
    let ops: usize = js(
        &page,
        "document.querySelectorAll('article.soak-ops tr[data-op=\"alpha/get\"]').length",
    )
    .await;
    assert_eq!(ops, 5, "p50, p95, p99, error ratio and rate of alpha/get");
    // Every drawn series chart has a canvas.
    let canvases: usize = js(
        &page,
        "document.querySelectorAll('article.soak .soak-series canvas').length",
    )
    .await;
    assert!(canvases >= 5, "{canvases}");
    screenshot(&page, shots.path(), "soak-card.png").await;
    phone_width(&page, true).await;
    screenshot(&page, shots.path(), "soak-card-phone.png").await;
    phone_width(&page, false).await;
    watch.assert_clean(&origin);
    drop(chrome);
    d.shutdown(Duration::from_secs(5)).await;
}

/// Deploys on the page: a deploy told by the API is marked on every chart, and the
/// Deploys card lists it, pending, then with its verdict and the measures behind it.
/// Screenshots at desktop and phone widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_marked_on_the_charts_and_judged_on_its_card() {
    let target = serve(counting_router(Arc::new(
        std::sync::atomic::AtomicU64::new(0),
    )))
    .await;
    let yaml = r#"
targets:
  api: {type: http, base_url: "${TARGET}", observe: {release: api}}
scenarios:
  alpha:
    target: api
    schedule: {hold: {rate: 50/s}}
    ops: {get: {http: {path: /}}}
deploys: {before: 24s, after: 24s, settle: 2s, block: 2s}
soak: {enabled: false}
"#;
    let d = daemon(config(yaml, target));
    let addr = d.addr();
    let origin = format!("http://{addr}/");
    let shots = tempfile::tempdir().unwrap();
    let chrome = Chrome::launch().await;
    let (page, watch) = chrome.open(&origin).await;
    tokio::time::sleep(Duration::from_secs(27)).await;
    let r = client()
        .post(format!("http://{addr}/api/v1/deploys"))
        .json(&serde_json::json!({"target": "api", "version": "2.0.0", "note": "build 42"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    wait_true(
        &page,
        "(() => { const c = soakd.charts(); return c.length > 0 && c.filter(x => x.points > 0).every(x => x.deploys === 1); })()",
        Duration::from_secs(20),
        "every chart marks the deploy",
    )
    .await;
    wait_true(
        &page,
        "!document.querySelector('#deploys').hidden && document.querySelector('#deploys tr[data-deploy]')?.dataset.state === 'pending'",
        Duration::from_secs(20),
        "the card lists the deploy, pending",
    )
    .await;
    let text: String = js(&page, "document.querySelector('#deploys').textContent").await;
    assert!(
        text.contains("→ 2.0.0") && text.contains("build 42"),
        "{text}"
    );
    wait_true(
        &page,
        "['unchanged', 'improved', 'regressed', 'invalid'].includes(document.querySelector('#deploys tr[data-deploy]')?.dataset.state)",
        Duration::from_secs(60),
        "the card shows the verdict",
    )
    .await;
    let state: String = js(
        &page,
        "document.querySelector('#deploys tr[data-deploy]').dataset.state",
    )
    .await;
    if state != "invalid" {
        let measures: usize = js(
            &page,
            "document.querySelectorAll('#deploys table.findings tbody tr').length",
        )
        .await;
        assert!(
            measures >= 3,
            "p50, p95 and p99 under the deploy: {measures}"
        );
        let side: usize = js(
            &page,
            "document.querySelectorAll('#deploys table.releases td').length",
        )
        .await;
        assert!(side >= 2, "the release side by side");
    }
    let text: String = js(&page, "document.querySelector('#deploys').textContent").await;
    assert!(
        !text.contains("null") && !text.contains("undefined"),
        "{text}"
    );
    let link: String = js(
        &page,
        "document.querySelector('#deploys tr[data-deploy] a').getAttribute('href')",
    )
    .await;
    assert!(link.starts_with("/deploys/api-"), "{link}");
    js::<serde_json::Value>(
        &page,
        "document.querySelector('#deploys details').open = true",
    )
    .await;
    screenshot(&page, shots.path(), "deploys-card.png").await;
    phone_width(&page, true).await;
    screenshot(&page, shots.path(), "deploys-card-phone.png").await;
    phone_width(&page, false).await;
    watch.assert_clean(&origin);
    drop(chrome);
    d.shutdown(Duration::from_secs(5)).await;
}
