//! Server-rendered HTML of the dashboard: the page, the live region that
//! the page's script swaps in after each event, and one service's tasks.
//! Everything from outside is escaped; without JavaScript the page is a
//! complete read-only snapshot.

use std::fmt::Write;

use serde_json::Value;

use super::model::{Colour, Dashboard, ServiceRow};
use super::relay::{Line, Upstream};

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value (app ids have `/`).
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Links and facts the page shell shows.
#[derive(Debug, Clone)]
pub struct Shell<'a> {
    pub marathon_url: &'a str,
    /// The subscriber's `/info` (the registry's own view), if known.
    pub registry_view: Option<&'a str>,
    /// The API needs a bearer token for actions.
    pub token_required: bool,
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><link rel=\"stylesheet\" href=\"/dashboard/style.css\"></head>\n",
        esc(title)
    )
}

fn header(shell: &Shell<'_>, upstream: &Upstream) -> String {
    let registry = shell
        .registry_view
        .map(|u| {
            format!(
                " · <a id=\"registry-link\" href=\"{}\">registry view (subscriber /info)</a>",
                esc(u)
            )
        })
        .unwrap_or_default();
    let (state, words) = if upstream.connected {
        ("snapshot", "snapshot (live with JavaScript)")
    } else {
        ("disconnected", "manager events disconnected")
    };
    format!(
        "<header><h1><a href=\"/\">mdo</a></h1><span class=\"where\">Marathon API <code>{}</code>{registry} · \
<a href=\"/services\">JSON</a></span><span id=\"live\" class=\"live {state}\" data-state=\"{state}\">{words}</span></header>\n",
        esc(shell.marathon_url),
    )
}

/// The whole page.
pub fn page(d: &Dashboard, lines: &[Line], upstream: &Upstream, shell: &Shell<'_>) -> String {
    let mut out = head("mdo dashboard");
    out.push_str("<body>\n");
    out.push_str(&header(shell, upstream));
    out.push_str("<main>\n<div id=\"live-region\">\n");
    out.push_str(&live_region(d));
    out.push_str("</div>\n");
    out.push_str(&strip(lines));
    out.push_str(&apply_panel(shell));
    out.push_str("</main>\n<script src=\"/dashboard/app.js\" defer></script>\n</body></html>\n");
    out
}

/// The latest events.
pub fn strip(lines: &[Line]) -> String {
    let mut out = String::from("<section id=\"events\"><h2>Latest events</h2><ol id=\"strip\">");
    for l in lines {
        let _ = write!(
            out,
            "<li class=\"{}\"><time>{}</time> {}</li>",
            l.level,
            esc(short_time(&l.time)),
            esc(&l.text)
        );
    }
    if lines.is_empty() {
        out.push_str("<li class=\"none\">No events yet.</li>");
    }
    out.push_str("</ol></section>\n");
    out
}

/// `2026-12-06T09:10:11.123Z` -> `09:10:11`.
fn short_time(t: &str) -> &str {
    t.split_once('T')
        .map(|(_, rest)| rest.get(..8).unwrap_or(rest))
        .unwrap_or(t)
}

fn apply_panel(shell: &Shell<'_>) -> String {
    // Hidden without JavaScript: the page is then read-only.
    let token = if shell.token_required {
        "<label>API token <input id=\"token\" type=\"password\" autocomplete=\"off\" \
placeholder=\"needed for actions\"></label>"
    } else {
        "<label>API token <input id=\"token\" type=\"password\" autocomplete=\"off\" \
placeholder=\"not required by this deployer\"></label>"
    };
    format!(
        "<section id=\"apply\" class=\"js-only\" hidden><h2>Apply a deploy document</h2>\
<p>{token} <span id=\"token-state\"></span></p>\
<textarea id=\"doc\" rows=\"10\" spellcheck=\"false\" placeholder=\"deploy:&#10;  web:&#10;    cmd: ...\"></textarea>\
<p><input id=\"doc-file\" type=\"file\" accept=\".yml,.yaml,.json\"> \
<button id=\"plan-button\" type=\"button\">Show the plan</button> \
<button id=\"apply-button\" type=\"button\" disabled>Apply</button></p>\
<div id=\"plan\"></div></section>\n"
    )
}

/// Summary, deployments in progress and the services table: what the
/// page's script replaces after each event.
pub fn live_region(d: &Dashboard) -> String {
    let mut out = String::with_capacity(512 + d.services.len() * 600);
    let count = |c: Colour| d.totals.get(c.as_str()).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "<p id=\"summary\">{} services: <span class=\"dot green\"></span>{} healthy, \
<span class=\"dot amber\"></span>{} deploying or partial, <span class=\"dot red\"></span>{} failing, \
<span class=\"dot grey\"></span>{} suspended</p>",
        d.services.len(),
        count(Colour::Green),
        count(Colour::Amber),
        count(Colour::Red),
        count(Colour::Grey)
    );
    if let Some(e) = &d.registry_error {
        let _ = writeln!(
            out,
            "<p class=\"warning\" id=\"registry-error\">The registry could not be read ({}): endpoints below come from Marathon.</p>",
            esc(e)
        );
    }
    out.push_str("<section id=\"deployments\"><h2>Deployments in progress</h2>");
    if d.deployments.is_empty() {
        out.push_str("<p class=\"none\">None.</p>");
    } else {
        out.push_str("<table><tr><th>Deployment</th><th>Apps</th><th>Step</th><th>Steps</th></tr>");
        for dep in &d.deployments {
            let steps: Vec<String> = dep
                .steps
                .iter()
                .enumerate()
                .map(|(i, actions)| {
                    let class = if (i as u32) + 1 < dep.current_step {
                        "done"
                    } else if (i as u32) + 1 == dep.current_step {
                        "current"
                    } else {
                        "todo"
                    };
                    format!("<li class=\"{class}\">{}</li>", esc(&actions.join(", ")))
                })
                .collect();
            let _ = write!(
                out,
                "<tr class=\"deployment\" data-id=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}/{}</td><td><ol>{}</ol></td></tr>",
                esc(&dep.id),
                esc(&dep.id),
                esc(&dep.apps.join(", ")),
                dep.current_step,
                dep.total_steps,
                steps.join("")
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>\n<section id=\"services-section\"><h2>Services</h2>\n");
    out.push_str(
        "<table id=\"services\"><thead><tr><th></th><th>Service</th><th>Group</th><th>App</th>\
<th>Runs</th><th title=\"wanted\">Wanted</th><th>Running</th><th>Healthy</th><th>Status</th><th>Endpoints</th></tr></thead><tbody>\n",
    );
    for s in &d.services {
        service_row(&mut out, s);
    }
    if d.services.is_empty() {
        out.push_str("<tr><td colspan=\"10\" class=\"none\">No services yet. Apply a document below, or POST one to /deploy.</td></tr>\n");
    }
    out.push_str("</tbody></table></section>\n");
    out
}

fn service_row(out: &mut String, s: &ServiceRow) {
    let v = &s.view;
    let healthy = if s.has_checks {
        v.healthy.to_string()
    } else {
        "-".to_string()
    };
    let mut eps = String::new();
    for (name, list) in &s.endpoint_list {
        let addrs: Vec<String> = list
            .iter()
            .map(|e| {
                if e.unregistered {
                    format!(
                        "<span class=\"unregistered\" title=\"not in the registry\">{}</span>",
                        esc(&e.address)
                    )
                } else {
                    format!("<span class=\"ep\">{}</span>", esc(&e.address))
                }
            })
            .collect();
        let _ = write!(eps, "<div><b>{}</b> {}</div>", esc(name), addrs.join(" "));
    }
    let failure = s
        .last_failure
        .as_deref()
        .filter(|_| s.colour == Colour::Red)
        .map(|f| format!("<br><small>last failure: {}</small>", esc(f)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "<tr class=\"svc {colour}\" data-app=\"{app}\" data-colour=\"{colour}\">\
<td><span class=\"dot {colour}\" title=\"{colour}\"></span></td>\
<td class=\"name\"><a class=\"open\" href=\"/dashboard/app?id={q}\">{service}</a></td><td>{group}</td>\
<td><code>{app}</code></td><td class=\"runs\"><code>{runs}</code></td>\
<td class=\"wanted\">{wanted}</td><td class=\"running\">{running}</td><td class=\"healthy\">{healthy}</td>\
<td class=\"status\">{status}{failure}</td><td class=\"endpoints\">{eps}</td></tr>",
        colour = s.colour.as_str(),
        app = esc(&v.app_id),
        q = esc(&query_value(&v.app_id)),
        service = esc(&v.service),
        group = esc(&v.group),
        runs = esc(&v.runs),
        wanted = v.instances,
        running = v.running,
        status = esc(&s.status),
    );
}

/// One task of a service, with what the page shows about it.
#[derive(Debug, Clone)]
pub struct TaskDetail {
    pub id: String,
    pub host: String,
    /// `name=port` pairs.
    pub ports: Vec<String>,
    pub state: String,
    pub started: String,
    /// Each health check's latest result.
    pub health: Vec<Value>,
    /// The last lines of its log, or why there are none.
    pub log: Result<String, String>,
    /// Its registry record, pretty JSON; `None` when it has none.
    pub record: Option<String>,
}

/// One service opened: its actions and its tasks.
pub fn app_detail(row: Option<&ServiceRow>, app_id: &str, tasks: &[TaskDetail]) -> String {
    let mut out = String::new();
    let _ = write!(out, "<div class=\"detail\" data-app=\"{}\">", esc(app_id));
    if let Some(s) = row {
        let _ = write!(
            out,
            "<p><span class=\"dot {c}\"></span> <b>{}</b> ({}) · {} · wanted {}, running {}</p>",
            esc(&s.view.service),
            esc(&s.view.group),
            esc(&s.status),
            s.view.instances,
            s.view.running,
            c = s.colour.as_str()
        );
        let _ = write!(
            out,
            "<div class=\"actions js-only\" hidden data-app=\"{app}\">\
<label>Instances <input class=\"scale-to\" type=\"number\" min=\"0\" value=\"{n}\"></label> \
<button type=\"button\" class=\"scale\">Scale</button> \
<button type=\"button\" class=\"restart\">Restart</button> \
<button type=\"button\" class=\"remove danger\">Remove</button> <span class=\"result\"></span></div>",
            app = esc(app_id),
            n = s.view.instances
        );
    } else {
        let _ = write!(out, "<p>No app <code>{}</code>.</p>", esc(app_id));
    }
    if tasks.is_empty() {
        out.push_str("<p class=\"none\">No tasks.</p>");
    } else {
        out.push_str(
            "<table class=\"tasks\"><tr><th>Task</th><th>Host</th><th>Ports</th><th>State</th><th>Started</th>\
<th>Health checks</th><th>Log (last lines)</th><th>Registry record</th></tr>",
        );
        for t in tasks {
            let health: Vec<String> = t
                .health
                .iter()
                .map(|h| {
                    let alive = h.get("alive").and_then(Value::as_bool) == Some(true);
                    let fails = h
                        .get("consecutiveFailures")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    let cause = h
                        .get("lastFailureCause")
                        .and_then(Value::as_str)
                        .filter(|_| !alive)
                        .map(|c| format!(": {}", esc(c)))
                        .unwrap_or_default();
                    format!(
                        "<div class=\"{}\">{} ({fails} failures in a row){cause}</div>",
                        if alive { "ok" } else { "bad" },
                        if alive { "alive" } else { "failing" }
                    )
                })
                .collect();
            let log = match &t.log {
                Ok(l) if l.trim().is_empty() => "<i>empty</i>".to_string(),
                Ok(l) => format!("<pre class=\"log\">{}</pre>", esc(l.trim_end())),
                Err(e) => format!("<i>{}</i>", esc(e)),
            };
            let record = match &t.record {
                Some(r) => format!("<pre class=\"record\">{}</pre>", esc(r)),
                None => "<i>none</i>".to_string(),
            };
            let _ = write!(
                out,
                "<tr class=\"task\" data-task=\"{id}\"><td><code>{id}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{log}</td><td>{record}</td></tr>",
                esc(&t.host),
                esc(&t.ports.join(" ")),
                esc(&t.state),
                esc(&t.started),
                if health.is_empty() { "-".to_string() } else { health.join("") },
                id = esc(&t.id),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</div>");
    out
}

/// A service's tasks as a page of its own (links without JavaScript).
pub fn app_page(detail_html: &str, app_id: &str, upstream: &Upstream, shell: &Shell<'_>) -> String {
    let mut out = head(&format!("{app_id} · mdo"));
    out.push_str("<body>\n");
    out.push_str(&header(shell, upstream));
    let _ = write!(
        out,
        "<main><p><a href=\"/\">← all services</a></p><h2><code>{}</code></h2>{}</main>\
<script src=\"/dashboard/app.js\" defer></script>\n</body></html>\n",
        esc(app_id),
        detail_html
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_query_values() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(query_value("/dev/web app&x"), "/dev/web%20app%26x");
        assert_eq!(short_time("2026-12-06T09:10:11.123Z"), "09:10:11");
        assert_eq!(short_time("x"), "x");
    }
}
