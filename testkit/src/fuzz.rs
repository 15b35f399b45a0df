//! A small seeded mutation fuzzer for the HTTP APIs' tests: start from a
//! valid document and break it (wrong types, huge, negative and non-finite
//! numbers, long and odd strings, deep nesting, duplicate keys, truncation,
//! invalid UTF-8, empty bodies). Same seed, same bodies: a failure
//! reproduces with `MDO_FUZZ_SEED=<seed>`.

use serde_json::{Map, Value};

/// The seed: `MDO_FUZZ_SEED` (decimal or 0x-hex), else a fixed default.
pub fn seed() -> u64 {
    std::env::var("MDO_FUZZ_SEED")
        .ok()
        .and_then(|s| {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        })
        .unwrap_or(0x5EED_F022)
}

/// The number of cases: `MDO_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("MDO_FUZZ_CASES")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// A printable preview of a body for failure messages (the start and the
/// length; bodies can be megabytes).
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(600)]).to_string();
    format!("{} bytes: {text:?}", body.len())
}

/// One fuzz run against an HTTP service: the seed and the number of cases
/// (from the environment, printed at the start), one client, the tally of
/// statuses (printed at the end) and progress every 500 cases.
///
/// ```ignore
/// let mut run = fuzz::Run::new("api_fuzz", 2_000);
/// let mut fuzzer = Fuzzer::new(run.seed());
/// for case in run.cases() {
///     let body = fuzzer.json_body(&doc);
///     let sent = run.send(case, Case::new(Method::POST, &base, "/v2/apps", body)).await;
///     // sent.status < 500 already holds; check what the answer changed.
/// }
/// run.finish();
/// ```
pub struct Run {
    name: String,
    seed: u64,
    cases: usize,
    http: reqwest::Client,
    statuses: std::collections::BTreeMap<u16, usize>,
    started: std::time::Instant,
}

/// One request of a case.
pub struct Case {
    pub method: reqwest::Method,
    pub url: String,
    /// Where it goes, for messages (`/v2/apps`).
    pub path: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Case {
    /// `method base+path` with a JSON body.
    pub fn new(method: reqwest::Method, base: &str, path: &str, body: Vec<u8>) -> Case {
        Case {
            method,
            url: format!("{base}{path}"),
            path: path.to_string(),
            content_type: Some("application/json"),
            body,
        }
    }

    /// The same with another `Content-Type` (or none).
    pub fn content_type(mut self, content_type: Option<&'static str>) -> Case {
        self.content_type = content_type;
        self
    }
}

/// What a case got: its status (below 500), the answer's body, and the case
/// described for messages (seed, case number, request and body preview).
pub struct Sent {
    pub status: u16,
    pub answer: Vec<u8>,
    pub what: String,
}

impl Sent {
    /// The start of the answer, as text.
    pub fn answer_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.answer[..self.answer.len().min(300)])
    }

    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A refused case changes no app: panics, naming the case and its
    /// answer, when the [`app_versions`] `after` it are not those `before`.
    pub fn assert_apps_unchanged(&self, before: &AppVersions, after: &AppVersions) {
        assert_eq!(
            after,
            before,
            "refused with {} ({}) yet apps changed: {}",
            self.status,
            self.answer_text(),
            self.what
        );
    }
}

impl Run {
    /// `MDO_FUZZ_SEED`, and `MDO_FUZZ_CASES` else `default_cases`.
    pub fn new(name: &str, default_cases: usize) -> Run {
        let (seed, cases) = (seed(), self::cases(default_cases));
        eprintln!("{name}: MDO_FUZZ_SEED={seed} MDO_FUZZ_CASES={cases}");
        Run {
            name: name.to_string(),
            seed,
            cases,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
            statuses: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The case numbers, `0..cases`.
    pub fn cases(&self) -> std::ops::Range<usize> {
        0..self.cases
    }

    /// The run's client (for the checks between cases).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends one case and reads the whole answer; panics, naming the seed,
    /// the case and the body, when there is no answer or it is 500 or more.
    pub async fn send(&mut self, case: usize, req: Case) -> Sent {
        if case.is_multiple_of(500) {
            eprintln!("{}: case {case} at {:?}", self.name, self.started.elapsed());
        }
        let what = format!(
            "MDO_FUZZ_SEED={} case {case}: {} {} (Content-Type {:?}) with {}",
            self.seed,
            req.method,
            req.path,
            req.content_type,
            preview(&req.body)
        );
        let sent_at = std::time::Instant::now();
        let mut builder = self.http.request(req.method, &req.url).body(req.body);
        if let Some(ct) = req.content_type {
            builder = builder.header("Content-Type", ct);
        }
        let resp = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("no answer ({e}) to {what}"));
        let status = resp.status().as_u16();
        let answer = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("answer cut ({e}) to {what}"))
            .to_vec();
        *self.statuses.entry(status).or_default() += 1;
        assert!(
            status < 500,
            "{status} {} to {what}",
            String::from_utf8_lossy(&answer)
        );
        if sent_at.elapsed() > std::time::Duration::from_secs(2) {
            eprintln!(
                "{}: slow case ({:?}, status {status}): {what}",
                self.name,
                sent_at.elapsed()
            );
        }
        Sent {
            status,
            answer,
            what,
        }
    }

    /// Prints the tally of statuses.
    pub fn finish(self) {
        eprintln!(
            "{}: {} cases, statuses {:?}",
            self.name, self.cases, self.statuses
        );
    }
}

/// App id -> version: what a refused body must leave as it was.
pub type AppVersions = std::collections::BTreeMap<String, Value>;

/// The apps of the Marathon API at `base` (`GET /v2/apps`).
pub async fn app_versions(http: &reqwest::Client, base: &str) -> AppVersions {
    let v = crate::http::json(http.get(format!("{base}/v2/apps"))).await;
    v["apps"]
        .as_array()
        .expect("apps list")
        .iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a["version"].clone()))
        .collect()
}

/// Panics when a service's log shows a panic.
pub fn assert_no_panic(who: &str, log: &str) {
    assert!(
        !log.contains("panicked"),
        "a panic in the {who}'s log:\n{log}"
    );
}

/// splitmix64: tiny, seeded, good enough to pick mutations.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Raw JSON texts that `serde_json::Value` cannot hold or that parsers
/// treat specially; spliced in place of a value.
const RAW_JSON: &[&str] = &[
    "18446744073709551616",
    "-18446744073709551617",
    "1e308",
    "-1e308",
    "1e999",
    "-0",
    "0.0000000000000000000001",
    "NaN",
    "Infinity",
    "-Infinity",
    "null",
    "9223372036854775808",
    "-9223372036854775809",
    "{\"a\":1,\"a\":2}",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "[1,2,",
    "01",
    "true false",
];

const ODD_STRINGS: &[&str] = &[
    "",
    " ",
    "../",
    "../../../../etc/passwd",
    "/",
    "//",
    "/a/../b",
    "a b",
    "\u{0}",
    "\u{7}\u{1b}[31m\r\n",
    "\t",
    "é",
    "日本語",
    "\u{202e}evil",
    "\u{feff}",
    "🦀",
    "%00",
    "${HOME}",
    "$(reboot)",
    "`id`",
    "'; DROP TABLE apps; --",
    "null",
    "true",
    "-1",
    "1e308",
    "http://169.254.169.254/",
    "UPPER",
    "a.b",
    ".",
    "..",
];

/// The largest body a case sends: above every limit the services have (so
/// the size checks are fuzzed too) but small enough that one case costs
/// milliseconds, not the minutes a many-gigabyte body would.
pub const MAX_BODY: usize = 8 << 20;

/// Mutates JSON documents (and YAML texts) from a seeded generator.
pub struct Fuzzer {
    pub rng: Rng,
}

impl Fuzzer {
    pub fn new(seed: u64) -> Fuzzer {
        Fuzzer {
            rng: Rng::new(seed),
        }
    }

    /// A JSON body: `doc` with 1-3 mutations; sometimes broken at the byte
    /// level too (truncated, invalid UTF-8, empty, deeply nested).
    pub fn json_body(&mut self, doc: &Value) -> Vec<u8> {
        let mut doc = doc.clone();
        let mut raws = Vec::new();
        for _ in 0..1 + self.rng.below(3) {
            self.mutate_value(&mut doc, &mut raws);
        }
        let mut text = serde_json::to_string(&doc).expect("a Value serialises");
        for (i, raw) in raws.iter().enumerate() {
            text = text.replace(&format!("\"__FUZZ_RAW_{i}__\""), raw);
        }
        let mut body = text.into_bytes();
        if self.rng.chance(8) {
            self.mutate_bytes(&mut body);
        }
        body.truncate(MAX_BODY);
        body
    }

    /// A YAML body: `text` with 1-3 line-level mutations, sometimes broken
    /// at the byte level too.
    pub fn yaml_body(&mut self, text: &str) -> Vec<u8> {
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        for _ in 0..1 + self.rng.below(3) {
            self.mutate_yaml_lines(&mut lines);
        }
        let mut body = lines.join("\n").into_bytes();
        body.push(b'\n');
        if self.rng.chance(15) {
            self.mutate_bytes(&mut body);
        }
        body.truncate(MAX_BODY);
        body
    }

    /// A value of any type, often an odd one.
    pub fn odd_value(&mut self, raws: &mut Vec<String>) -> Value {
        // Mostly values JSON can carry (semantic checks), sometimes raw
        // texts no `Value` holds (the parser's checks).
        let kind = match self.rng.below(20) {
            k @ 12.. => 2 + (k - 12) % 5,
            k => k,
        };
        match kind {
            0 => Value::Null,
            1 => Value::Bool(self.rng.chance(50)),
            2 => serde_json::json!(*self.rng.pick(&[
                -1i64,
                0,
                i64::MIN,
                i64::MAX,
                2_147_483_648,
                65_536,
                -65_536
            ])),
            3 => serde_json::json!(*self.rng.pick(&[u64::MAX, 4_294_967_296])),
            4 => serde_json::json!(*self.rng.pick(&[1e308, -1e308, 0.5, -0.5, 1e-300, 3.7])),
            5 => Value::String(self.rng.pick(ODD_STRINGS).to_string()),
            6 => Value::String(self.long_string()),
            7 => Value::Array(
                (0..self.rng.below(4))
                    .map(|_| Value::String(self.rng.pick(ODD_STRINGS).to_string()))
                    .collect(),
            ),
            8 => {
                let mut m = Map::new();
                m.insert(
                    self.rng.pick(ODD_STRINGS).to_string(),
                    Value::String(self.rng.pick(ODD_STRINGS).to_string()),
                );
                Value::Object(m)
            }
            9 => {
                let depth = *self.rng.pick(&[64usize, 129, 1_000, 10_000]);
                self.raw(raws, format!("{}1{}", "[".repeat(depth), "]".repeat(depth)))
            }
            10 => {
                let depth = *self.rng.pick(&[64usize, 1_000, 10_000]);
                self.raw(
                    raws,
                    format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
                )
            }
            _ => {
                let raw = self.rng.pick(RAW_JSON).to_string();
                self.raw(raws, raw)
            }
        }
    }

    fn raw(&mut self, raws: &mut Vec<String>, text: String) -> Value {
        let marker = format!("__FUZZ_RAW_{}__", raws.len());
        raws.push(text);
        Value::String(marker)
    }

    fn long_string(&mut self) -> String {
        let len = *self.rng.pick(&[256usize, 4_096, 70_000, 1_100_000]);
        let unit = *self.rng.pick(&["a", "é", "/", "\u{0}", "../", "🦀"]);
        unit.repeat(len / unit.len())
    }

    /// One structural mutation somewhere in `doc`.
    fn mutate_value(&mut self, doc: &mut Value, raws: &mut Vec<String>) {
        // Walk down to a random node (stop early sometimes).
        let mut node = doc;
        loop {
            let children = match node {
                Value::Object(m) => m.len(),
                Value::Array(a) => a.len(),
                _ => 0,
            };
            if children == 0 || self.rng.chance(30) {
                break;
            }
            let i = self.rng.below(children);
            node = match node {
                Value::Object(m) => m.values_mut().nth(i).expect("in range"),
                Value::Array(a) => &mut a[i],
                _ => unreachable!(),
            };
        }
        match (self.rng.below(6), &mut *node) {
            (0, Value::Object(m)) if !m.is_empty() => {
                let key = m.keys().nth(self.rng.below(m.len())).cloned().expect("key");
                m.remove(&key);
            }
            (1, Value::Object(m)) => {
                let key = if self.rng.chance(50) {
                    self.rng.pick(ODD_STRINGS).to_string()
                } else {
                    self.rng
                        .pick(&[
                            "id",
                            "instances",
                            "cmd",
                            "apps",
                            "groups",
                            "cpus",
                            "__proto__",
                        ])
                        .to_string()
                };
                let v = self.odd_value(raws);
                m.insert(key, v);
            }
            (1, Value::Array(a)) => {
                let v = self.odd_value(raws);
                a.push(v);
            }
            (2, Value::Array(a)) if !a.is_empty() => {
                // Many copies of one element.
                let first = a[0].clone();
                let size = serde_json::to_string(&first).map_or(1, |t| t.len().max(1));
                let n = (*self.rng.pick(&[2usize, 100, 5_000])).min(MAX_BODY / size + 1);
                a.extend(std::iter::repeat_n(first, n));
            }
            (3, Value::Object(m)) if !m.is_empty() => {
                // A duplicate key: the same key again with another value.
                let key = m.keys().nth(self.rng.below(m.len())).cloned().expect("key");
                let v = self.odd_value(raws);
                let dup = serde_json::to_string(&v).expect("serialises");
                let old = m.remove(&key).expect("present");
                let old = serde_json::to_string(&old).expect("serialises");
                // The raw text replaces `"marker"` (the value of `key`): the
                // first value, a comma and the same key again.
                let text = format!("{old},{}:{dup}", Value::String(key.clone()));
                let raw = self.raw(raws, text);
                m.insert(key, raw);
            }
            _ => *node = self.odd_value(raws),
        }
    }

    fn mutate_yaml_lines(&mut self, lines: &mut Vec<String>) {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let i = self.rng.below(lines.len());
        match self.rng.below(9) {
            0 => {
                // Replace a scalar after `key:` with an odd one.
                if let Some(colon) = lines[i].find(':') {
                    let scalar = self.yaml_scalar();
                    lines[i] = format!("{}: {scalar}", &lines[i][..colon]);
                } else {
                    lines[i] = self.yaml_scalar();
                }
            }
            1 => {
                let dup = lines[i].clone();
                lines.insert(i, dup); // a duplicate key
            }
            2 => {
                lines.remove(i);
            }
            3 => {
                let indent = *self.rng.pick(&["", " ", "\t", "        ", "  - "]);
                lines[i] = format!("{indent}{}", lines[i].trim_start());
            }
            4 => {
                let depth = *self.rng.pick(&[64usize, 1_000, 10_000]);
                let deep = format!("{}x{}", "[".repeat(depth), "]".repeat(depth));
                match lines[i].find(':') {
                    Some(colon) => lines[i] = format!("{}: {deep}", &lines[i][..colon]),
                    None => lines[i] = deep,
                }
            }
            5 => {
                let key = self.rng.pick(ODD_STRINGS).to_string();
                let indent: String = lines[i].chars().take_while(|c| *c == ' ').collect();
                let scalar = self.yaml_scalar();
                lines.insert(i, format!("{indent}{key:?}: {scalar}"));
            }
            6 => {
                // Anchors and aliases, tags, documents.
                let extra = *self.rng.pick(&[
                    "x: &a [1, 2]\ny: *a",
                    "z: *missing",
                    "---",
                    "...",
                    "!!binary aGVsbG8=",
                    "? [complex, key]\n: value",
                    "<<: {merged: 1}",
                    "%YAML 1.2",
                ]);
                lines.insert(i, extra.to_string());
            }
            7 => {
                if let Some(colon) = lines[i].find(':') {
                    let long = self.long_string();
                    lines[i] = format!("{}: {:?}", &lines[i][..colon], long);
                }
            }
            _ => {
                let n = lines.len();
                lines.truncate(self.rng.below(n));
            }
        }
    }

    fn yaml_scalar(&mut self) -> String {
        match self.rng.below(4) {
            0 => self.rng.pick(RAW_JSON).to_string(),
            1 => format!("{:?}", self.rng.pick(ODD_STRINGS)),
            2 => self
                .rng
                .pick(&[
                    "~",
                    ".nan",
                    ".inf",
                    "-.inf",
                    "0x7fffffffffffffffff",
                    "0o777",
                    "1_000",
                    "yes",
                    "no",
                    "2001-12-14t21:59:43.10-05:00",
                    "[]",
                    "{}",
                    "[a, {b: c}]",
                    "|\n  block\n  text",
                    "'unterminated",
                    "\"unterminated",
                    "- item",
                ])
                .to_string(),
            _ => self.rng.pick(ODD_STRINGS).to_string(),
        }
    }

    /// Breaks a body at the byte level.
    pub fn mutate_bytes(&mut self, body: &mut Vec<u8>) {
        match self.rng.below(6) {
            0 => body.clear(),
            1 => {
                let n = body.len();
                body.truncate(self.rng.below(n.max(1)));
            }
            2 => {
                // Invalid UTF-8 somewhere.
                let at = self.rng.below(body.len() + 1);
                let bad = *self.rng.pick::<&[u8]>(&[
                    b"\xff".as_slice(),
                    b"\xc3\x28".as_slice(),
                    b"\xed\xa0\x80".as_slice(),
                    b"\xf4\x90\x80\x80".as_slice(),
                    b"\x80".as_slice(),
                ]);
                body.splice(at..at, bad.iter().copied());
            }
            3 => {
                // Flip one byte.
                if !body.is_empty() {
                    let at = self.rng.below(body.len());
                    body[at] ^= 1 << self.rng.below(8);
                }
            }
            4 => {
                let depth = *self.rng.pick(&[1_000usize, 10_000, 100_000]);
                *body = "[".repeat(depth).into_bytes();
            }
            _ => {
                // A NUL and a byte-order mark up front.
                body.splice(0..0, b"\xef\xbb\xbf\x00".iter().copied());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bodies() {
        let doc = serde_json::json!({"id": "/a", "n": 1, "l": [1, {"x": "y"}]});
        let a: Vec<Vec<u8>> = {
            let mut f = Fuzzer::new(7);
            (0..200).map(|_| f.json_body(&doc)).collect()
        };
        let mut f = Fuzzer::new(7);
        for body in &a {
            assert_eq!(&f.json_body(&doc), body);
        }
        let mut f = Fuzzer::new(8);
        assert!((0..200).any(|i| f.json_body(&doc) != a[i]));
    }

    #[test]
    fn bodies_stay_under_the_cap() {
        // Seed 42 once built a 5.5 GB body (5,000 copies of an element
        // holding a 1.1 MB string) that took five minutes to send.
        let doc = serde_json::json!([{"id": "/a", "env": {"A": "b"}}, {"id": "/b"}]);
        let mut f = Fuzzer::new(42);
        for _ in 0..1_500 {
            assert!(f.json_body(&doc).len() <= MAX_BODY);
        }
    }
}
