//! The bot verdict against published user-agent corpora (`tests/fixtures/user-agents`, rebuilt
//! by the `refresh` script there). Recall is measured on two crawler corpora — one the edge's
//! crawler list comes from, one never tuned on (Matomo's fixtures) — and false positives on
//! real browsers weighted by their share of traffic and on a long tail of rare browsers.
//!
//! `cargo test -p ta-edge --test bot_corpora -- --nocapture` prints the table and the misses.

use std::path::Path;

use ta_edge::user_agent::UserAgentParser;

fn lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/user-agents")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Share of `uas` (with weights) judged bots, and the ones that were.
struct Tally {
    bot_weight: f64,
    total_weight: f64,
    count: usize,
    flagged: Vec<String>,
    passed: Vec<String>,
    reasons: std::collections::BTreeMap<&'static str, usize>,
}

fn tally<'a>(parser: &UserAgentParser, uas: impl Iterator<Item = (f64, &'a str)>) -> Tally {
    let mut t = Tally {
        bot_weight: 0.0,
        total_weight: 0.0,
        count: 0,
        flagged: Vec::new(),
        passed: Vec::new(),
        reasons: Default::default(),
    };
    for (w, ua) in uas {
        t.count += 1;
        t.total_weight += w;
        // Unsigned: what the tracker's beacons are.
        if let Err(reason) = parser.classify_request(ua, false) {
            *t.reasons.entry(reason.as_str()).or_default() += 1;
            t.bot_weight += w;
            t.flagged.push(ua.to_owned());
        } else {
            t.passed.push(ua.to_owned());
        }
    }
    t
}

impl Tally {
    fn share(&self) -> f64 {
        self.bot_weight / self.total_weight
    }
}

fn crawlers(name: &str) -> Tally {
    let uas = lines(name);
    tally(
        &UserAgentParser::default(),
        uas.iter().map(|u| (1.0, u.as_str())),
    )
}

/// How many misses or false positives to print under each row.
const SHOW: usize = 40;

fn print(corpus: &str, what: &str, t: &Tally, shown: &[String]) {
    println!(
        "| {corpus:<32} | {:>5} | {what:<22} | {:>8.3}% |",
        t.count,
        100.0 * t.share()
    );
    println!("|   by reason: {:?}", t.reasons);
    for ua in shown.iter().take(SHOW) {
        println!("|   {ua}");
    }
}

/// The crawler corpora, what each measures and the least recall each must keep. The edge's
/// crawler list comes from the first and its shape rules were written against the first two.
/// The third was the hold-out of the first round (92.7% when first run, 2026-12-06) and was
/// then tuned on; the fourth was written before that second round and never looked at while
/// tuning: it says how well the rules generalise (98.69% when first run, 2026-12-06; most of
/// its misses are Cubot phones, which that list counts as bots for their name). Tuning on it
/// means a new hold-out is needed.
const CRAWLER_CORPORA: &[(&str, &str, f64)] = &[
    ("crawlers-monperrus.txt", "recall (tuned on)", 0.98),
    ("crawlers-matomo.txt", "recall (tuned on)", 0.98),
    ("crawlers-isbot.txt", "recall (tuned on, 2nd)", 0.98),
    ("crawlers-holdout2.txt", "recall (hold-out)", 0.98),
];

#[test]
fn crawler_recall_holds_on_every_corpus() {
    println!("| corpus                           | UAs   | measure                | value     |");
    let tallies: Vec<_> = CRAWLER_CORPORA
        .iter()
        .map(|(name, measure, floor)| {
            let t = crawlers(name);
            print(name, measure, &t, &t.passed);
            (name, t, floor)
        })
        .collect();
    for (name, t, floor) in tallies {
        assert!(
            t.share() >= *floor,
            "{name}: recall {:.2}% < {:.0}%; {} missed",
            100.0 * t.share(),
            100.0 * floor,
            t.passed.len()
        );
    }
}

#[test]
fn real_browsers_weighted_by_traffic_are_almost_never_bots() {
    let rows = lines("browsers-intoli.tsv");
    let parsed: Vec<(f64, &str)> = rows
        .iter()
        .map(|r| {
            let (w, ua) = r.split_once('\t').expect("weight<TAB>ua");
            (w.parse().expect("weight"), ua)
        })
        .collect();
    let t = tally(&UserAgentParser::default(), parsed.into_iter());
    print(
        "browsers-intoli.tsv",
        "false positives (wtd)",
        &t,
        &t.flagged,
    );
    assert!(
        (t.total_weight - 1.0).abs() < 1e-6,
        "weights sum to {}",
        t.total_weight
    );
    assert!(
        t.share() <= 0.001,
        "{:.3}% of browser traffic judged bots: {:?}",
        100.0 * t.share(),
        t.flagged
    );
}

/// The long tail: feature phones, TVs, consoles, Dalvik app clients. Most of what is refused
/// here is refused by the rule that predates the corpora (a string neither `Mozilla/`-shaped nor
/// known to woothee is not a browser that can run the tracker); the list and shape rules may add
/// at most 0.5%.
#[test]
fn rare_browsers_are_rarely_bots() {
    let t = crawlers("browsers-matomo.txt");
    print("browsers-matomo.txt", "false positives", &t, &t.flagged);
    let old_rules: usize = ["garbage_user_agent", "empty_user_agent"]
        .iter()
        .map(|r| t.reasons.get(r).copied().unwrap_or(0))
        .sum();
    let new_rules = t.flagged.len() - old_rules;
    println!(
        "|   {old_rules} by the Mozilla-or-known rule, {new_rules} ({:.2}%) by lists and shapes",
        100.0 * new_rules as f64 / t.count as f64
    );
    assert!(
        t.share() <= 0.05,
        "{:.2}% of rare browsers judged bots",
        100.0 * t.share()
    );
    assert!(
        new_rules as f64 <= 0.005 * t.count as f64,
        "{new_rules} rare browsers judged bots by the lists and shapes"
    );
}
