//! The page at `/`: a live picture of the soak without Prometheus or Grafana.
//!
//! Everything the page needs is in the binary: its HTML, script and stylesheet
//! (`web/`), and uPlot (`web/vendor/uplot/`, vendored with its licence) for the charts.
//! The page loads nothing from anywhere but soakd itself, so it works on an air-gapped
//! staging host. It reads the daemon through the same API everyone else uses —
//! `/api/v1/status`, `/api/v1/history`, `/api/v1/search`, `/api/v1/runs` — and its
//! controls call the control API with its rules (bearer token, loopback-only without one).
//!
//! The server owns the routes; this module provides what they serve: the embedded
//! files, the history payload and a capacity report rendered as HTML.

pub mod report;

use crate::events::EventLog;
use crate::history::{History, Resolution};
use serde::Serialize;

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static str,
}

/// The uPlot release vendored in `web/vendor/uplot/`.
pub const UPLOT_VERSION: &str = "1.6.32";

pub const PAGE: &str = include_str!("../../web/index.html");

/// An ES module of the page (`web/*.js`), served as JavaScript.
macro_rules! module {
    ($name:literal) => {
        Asset {
            name: $name,
            content_type: "text/javascript; charset=utf-8",
            body: include_str!(concat!("../../web/", $name)),
        }
    };
}

/// The files under `/assets/`: the page's modules (`main.js` imports the rest), its
/// stylesheet, and uPlot with its licence.
pub const ASSETS: &[Asset] = &[
    module!("main.js"),
    module!("api.js"),
    module!("store.js"),
    module!("format.js"),
    module!("dom.js"),
    module!("catalogue.js"),
    module!("layout.js"),
    module!("charts.js"),
    module!("cards.js"),
    module!("controls.js"),
    module!("soak.js"),
    module!("deploys.js"),
    Asset {
        name: "dashboard.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/dashboard.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/vendor/uplot/uPlot.min.css"),
    },
    Asset {
        name: "uPlot-LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        body: include_str!("../../web/vendor/uplot/LICENSE"),
    },
];

pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// `GET /api/v1/history`: rows newer than `since_ms`, and the events after it.
#[derive(Serialize)]
pub struct HistoryPayload {
    pub resolution: Resolution,
    /// Milliseconds between rows.
    pub step_ms: i64,
    /// Rows the ring holds at most (the bound on `t`'s length).
    pub capacity: usize,
    /// The server's clock, unix milliseconds.
    pub now_ms: i64,
    #[serde(flatten)]
    pub view: crate::history::View,
    pub events: Vec<crate::events::Event>,
}

pub fn history_payload(
    history: &History,
    events: &EventLog,
    resolution: Resolution,
    since_ms: i64,
) -> HistoryPayload {
    HistoryPayload {
        resolution,
        step_ms: resolution.step_ms(),
        capacity: history.capacity(resolution),
        now_ms: crate::events::now_ms(),
        view: history.view(resolution, since_ms),
        events: events.since(since_ms),
    }
}
