//! A stored capacity run's report as one HTML page: the Markdown report rendered with
//! pulldown-cmark, its SVG charts placed inline where the Markdown links them, so the
//! page stands alone (and prints, or saves, as one file).

use crate::capacity::report::Report;
use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report's Markdown as HTML, with each `![alt](chart.svg)` replaced by the chart.
pub fn body_html(report: &Report) -> String {
    let parser = Parser::new_ext(&report.markdown, Options::ENABLE_TABLES);
    let mut events: Vec<Event> = Vec::new();
    // Inside an image: its events are swallowed and the chart goes in its place.
    let mut in_image = false;
    for ev in parser {
        match ev {
            Event::Start(Tag::Image { dest_url, .. }) => {
                match report.charts.iter().find(|(n, _)| *n == dest_url.as_ref()) {
                    Some((name, svg)) => {
                        events.push(Event::Html(
                            format!(
                                "<figure class=\"chart\" data-chart=\"{}\">{svg}</figure>",
                                esc(name)
                            )
                            .into(),
                        ));
                        in_image = true;
                    }
                    None => events.push(Event::Start(Tag::Image {
                        link_type: pulldown_cmark::LinkType::Inline,
                        dest_url,
                        title: "".into(),
                        id: "".into(),
                    })),
                }
            }
            Event::End(TagEnd::Image) if in_image => in_image = false,
            _ if in_image => {}
            // The report holds text from the database (statement texts) and the config;
            // none of it is markup, so raw HTML in the Markdown is shown, not run.
            Event::Html(t) | Event::InlineHtml(t) => events.push(Event::Text(t)),
            ev => events.push(ev),
        }
    }
    let mut out = String::new();
    html::push_html(&mut out, events.into_iter());
    out
}

/// The whole page for `/runs/{id}`.
pub fn page(run_id: &str, report: &Report) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>soakd — capacity run {id}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/dashboard.css">
</head><body class="report-page">
<header class="top"><a href="/" class="brand">soakd</a><span class="muted">capacity run <code>{id}</code></span>
<span class="grow"></span><a href="/api/v1/runs/{id}/report">Markdown</a> · <a href="/api/v1/runs/{id}">JSON</a></header>
<main class="report">{body}</main>
</body></html>"#,
        id = esc(run_id),
        body = body_html(report),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_go_inline_and_tables_render() {
        let report = Report {
            markdown: "# Run\n\n| level | p95 |\n|---|---|\n| 10/s | 5 ms |\n\n![latency](api-latency.svg)\n".into(),
            charts: vec![("api-latency.svg".into(), "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>".into())],
        };
        let h = body_html(&report);
        assert!(h.contains("<table>"), "{h}");
        assert!(h.contains("<td>10/s</td>"), "{h}");
        assert!(
            h.contains("<figure class=\"chart\" data-chart=\"api-latency.svg\"><svg"),
            "{h}"
        );
        assert!(!h.contains("<img"), "{h}");
        assert!(
            !h.contains(">latency<"),
            "the alt text is not left behind: {h}"
        );
    }

    #[test]
    fn html_in_stored_text_is_shown_not_run() {
        let report = Report {
            markdown: "Slowest: <script>alert(1)</script> and <img src=x onerror=alert(2)>\n\n<div>block</div>\n".into(),
            charts: vec![],
        };
        let h = body_html(&report);
        assert!(
            !h.contains("<script>") && !h.contains("<img") && !h.contains("<div>"),
            "{h}"
        );
        assert!(h.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{h}");
    }
}
