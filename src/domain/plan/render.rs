//! Ways to show a [`Plan`]: terminal text (terraform-like, optionally coloured), markdown for a
//! pull-request comment, and JSON (the shape in `schema/plan.schema.json`).
//!
//! Must hold: rendering only reads the plan; colour is a parameter (the caller knows whether the
//! terminal wants it), never detected here; markdown never exceeds the limit it is given and says
//! what it left out.

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};

use super::{Action, Change, Impact, Plan, rooms};

/// GitHub refuses comments above 65,536 characters; this leaves room for a bot's own framing.
pub const DEFAULT_MARKDOWN_LIMIT: usize = 60_000;

/// Characters kept free in markdown for the truncation note and the closing line.
const MARKDOWN_NOTE_RESERVE: usize = 600;

/// How many omitted schedulers the truncation note names.
const NOTE_NAMES: usize = 3;

const BOLD: Style = Style::new().bold();
const GREEN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Green)));
const RED: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
const YELLOW: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));
const MAGENTA: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Magenta)));
const CYAN: Style = Style::new().fg_color(Some(anstyle::Color::Ansi(AnsiColor::Cyan)));
const DIM: Style = Style::new().dimmed();

fn paint(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

fn action_style(a: Action) -> Style {
    match a {
        Action::Create => GREEN,
        Action::Delete => RED,
        Action::Rollout => MAGENTA,
        Action::UpdateInPlace | Action::Scale | Action::Converge => YELLOW,
        Action::Orphan => CYAN,
    }
}

fn revision_name(plan: &Plan) -> String {
    plan.revision.as_deref().map_or_else(
        || "the desired state".to_string(),
        |r| format!("revision {r}"),
    )
}

/// `will be rolled out: version 1a2b3c4d → 5e6f7a8b`, and so on.
fn headline(c: &Change) -> String {
    let versions = match (&c.from_version, &c.to_version) {
        (Some(a), Some(b)) if a != b => format!(": version {a} → {b}"),
        _ => String::new(),
    };
    let count = match c.live_target_rooms {
        Some(from) if from != c.target_rooms => format!(" ({from} → {} rooms)", c.target_rooms),
        _ => String::new(),
    };
    match c.action {
        Action::Create => format!("will be created ({})", rooms(c.target_rooms)),
        Action::UpdateInPlace => format!("will be updated in place{count}"),
        Action::Scale => format!("will be scaled{count}"),
        Action::Rollout => format!("will be rolled out{versions}{count}"),
        Action::Converge => format!("will be converged to {}", rooms(c.target_rooms)),
        Action::Delete => "will be deleted".to_string(),
        Action::Orphan => "is not in the revision and will be left alone".to_string(),
    }
}

/// `2 rooms to create, 4 to replace, 1 busy kept until free`; `no rooms move` when empty.
pub fn impact_text(i: &Impact) -> String {
    let mut parts = Vec::new();
    if i.create > 0 {
        parts.push(format!("{} to create", i.create));
    }
    if i.replace > 0 {
        parts.push(format!("{} to replace", i.replace));
    }
    if i.remove > 0 {
        parts.push(format!("{} to remove", i.remove));
    }
    if i.kept_busy > 0 {
        parts.push(format!("{} busy kept until free", i.kept_busy));
    }
    if parts.is_empty() {
        return "no rooms move".to_string();
    }
    let first = &mut parts[0];
    // "2 to create" → "2 rooms to create": say the unit once.
    if let Some((n, rest)) = first.split_once(' ') {
        let unit = if n == "1" { "room" } else { "rooms" };
        *first = format!("{n} {unit} {rest}");
    }
    parts.join(", ")
}

fn totals(plan: &Plan) -> (String, String) {
    let s = &plan.summary;
    let actions = format!(
        "{} to create, {} to update in place, {} to scale, {} to roll out, {} to converge, {} to delete",
        s.create, s.update, s.scale, s.rollout, s.converge, s.delete
    );
    let rooms = format!(
        "{} to create, {} to replace, {} to remove, {} busy kept until free",
        s.rooms_created, s.rooms_replaced, s.rooms_removed, s.busy_kept
    );
    (actions, rooms)
}

fn orphan_note(plan: &Plan) -> Option<String> {
    match plan.summary.orphan {
        0 => None,
        1 => Some(
            "1 live scheduler is not in the revision and is left running (prune is off)."
                .to_string(),
        ),
        n => Some(format!(
            "{n} live schedulers are not in the revision and are left running (prune is off)."
        )),
    }
}

/// Fields of a template shown by name in a plan's note before the rest are counted.
const IGNORED_SHOWN: usize = 6;

/// `the local runtime ignores spec.volumes, spec.containers[0].image and 3 more (they apply on
/// Kubernetes)`.
fn ignored_locally_note(fields: &[String]) -> String {
    let shown = fields[..fields.len().min(IGNORED_SHOWN)].join(", ");
    let more = fields.len().saturating_sub(IGNORED_SHOWN);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!("the local runtime ignores {shown}{more} (they apply on Kubernetes)")
}

/// Terminal text, terraform-like. `color` adds ANSI styles.
pub fn text(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    let title = format!("Troupe plan {} for {}", plan.id, revision_name(plan));
    let _ = writeln!(out, "{}\n", paint(color, BOLD, &title));
    for c in &plan.changes {
        let style = action_style(c.action);
        let _ = writeln!(
            out,
            "  {} {} {}",
            paint(color, style, c.action.symbol()),
            paint(color, BOLD, &c.scheduler),
            headline(c)
        );
        for r in &c.reasons {
            let _ = writeln!(out, "      # {r}");
        }
        if let Some(refusal) = &c.admission {
            let _ = writeln!(out, "      {}", paint(color, RED, &format!("! {refusal}")));
        }
        if !c.ignored_locally.is_empty() {
            let _ = writeln!(
                out,
                "      note: {}",
                ignored_locally_note(&c.ignored_locally)
            );
        }
        if c.action != Action::Orphan {
            let _ = writeln!(out, "      rooms: {}", impact_text(&c.impact));
        }
        if !c.diff.is_empty() {
            out.push('\n');
            for line in c.diff.lines() {
                let style = match line.as_bytes().first() {
                    _ if line.starts_with("+++") || line.starts_with("---") => BOLD,
                    Some(b'+') => GREEN,
                    Some(b'-') => RED,
                    Some(b'@') => CYAN,
                    _ => DIM,
                };
                let _ = writeln!(out, "      {}", paint(color, style, line));
            }
        }
        out.push('\n');
    }
    if plan.has_changes() {
        let (actions, rooms) = totals(plan);
        let _ = writeln!(out, "{} {actions}.", paint(color, BOLD, "Plan:"));
        let _ = writeln!(out, "{} {rooms}.", paint(color, BOLD, "Rooms:"));
        if let Some(note) = orphan_note(plan) {
            let _ = writeln!(out, "{note}");
        }
    } else {
        let line = format!("No changes. Live state matches {}.", revision_name(plan));
        let _ = writeln!(out, "{}", paint(color, GREEN, &line));
        if let Some(note) = orphan_note(plan) {
            let _ = writeln!(out, "{note}");
        }
    }
    if let Some(note) = refused_note(plan, |name| name.to_string()) {
        let _ = writeln!(out, "{} {note}", paint(color, RED, "Error:"));
    }
    out
}

/// `the API server refuses the pods of 2 schedulers (arena, party): applying this plan would
/// fail before any of their new rooms start.` `None` when nothing is refused. `name` formats a
/// scheduler's name.
fn refused_note(plan: &Plan, name: impl Fn(&str) -> String) -> Option<String> {
    let names: Vec<String> = plan.refused().map(|(c, _)| name(&c.scheduler)).collect();
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "the API server refuses the pods of {} ({}): applying this plan would fail before any of \
         their new rooms start.",
        schedulers(names.len()),
        names.join(", ")
    ))
}

/// HTML-escape text that goes inside `<details>`, where a stray `<` would be taken for a tag.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A code fence longer than any run of backticks in `body`, so the body cannot close it.
fn fence(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for ch in body.chars() {
        run = if ch == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn markdown_section(c: &Change) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<details><summary><code>{}</code> {} {}</summary>\n",
        c.scheduler,
        c.action.symbol(),
        escape(&headline(c))
    );
    for r in &c.reasons {
        let _ = writeln!(s, "- {}", escape(r));
    }
    if let Some(refusal) = &c.admission {
        let at = refusal
            .declared
            .as_ref()
            .map(|d| format!(" (`{d}`)"))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "\n> **Refused by the API server**{at}: {}",
            escape(&refusal.reason)
        );
    }
    if c.action != Action::Orphan {
        let _ = writeln!(s, "\n**Rooms:** {}", impact_text(&c.impact));
    }
    if !c.diff.is_empty() {
        let f = fence(&c.diff);
        let _ = write!(s, "\n{f}diff\n{}", c.diff);
        if !c.diff.ends_with('\n') {
            s.push('\n');
        }
        let _ = writeln!(s, "{f}");
    }
    s.push_str("\n</details>\n\n");
    s
}

/// Markdown for a pull-request comment, at most `limit` characters (bytes, as GitHub counts
/// them close enough); [`DEFAULT_MARKDOWN_LIMIT`] suits GitHub. A summary table, then one
/// collapsible section per change. When it does not fit, rows and sections are left out from the
/// end and a final note says how many.
pub fn markdown(plan: &Plan, limit: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Troupe plan `{}` for {}\n",
        plan.id,
        revision_name(plan)
    );
    if !plan.has_changes() {
        let _ = writeln!(
            out,
            "**No changes.** Live state matches {}.\n",
            revision_name(plan)
        );
    } else {
        let (actions, rooms) = totals(plan);
        let _ = writeln!(out, "**Plan:** {actions}.  \n**Rooms:** {rooms}.\n");
    }
    if let Some(note) = orphan_note(plan) {
        let _ = writeln!(out, "{note}\n");
    }
    if let Some(note) = refused_note(plan, |name| format!("`{name}`")) {
        let _ = writeln!(out, "> **Error:** {note}\n");
    }
    if !plan.in_sync.is_empty() {
        let _ = writeln!(out, "{} in sync.\n", schedulers(plan.in_sync.len()));
    }

    let budget = limit.saturating_sub(MARKDOWN_NOTE_RESERVE);
    let mut rows_cut = 0;
    if !plan.changes.is_empty() {
        out.push_str("| Scheduler | Action | Created | Replaced | Removed | Busy kept |\n");
        out.push_str("|---|---|---:|---:|---:|---:|\n");
        for (n, c) in plan.changes.iter().enumerate() {
            let i = &c.impact;
            let row = format!(
                "| `{}` | `{}` {} | {} | {} | {} | {} |\n",
                c.scheduler,
                c.action.symbol(),
                c.action.as_str(),
                i.create,
                i.replace,
                i.remove,
                i.kept_busy
            );
            if out.len() + row.len() > budget {
                rows_cut = plan.changes.len() - n;
                break;
            }
            out.push_str(&row);
        }
        if rows_cut > 0 {
            let _ = writeln!(
                out,
                "| … | {} more not shown | | | | |",
                schedulers(rows_cut)
            );
        }
        out.push('\n');
    }

    let mut cut_from = plan.changes.len();
    if rows_cut == 0 {
        for (n, c) in plan.changes.iter().enumerate() {
            let section = markdown_section(c);
            if out.len() + section.len() > budget {
                cut_from = n;
                break;
            }
            out.push_str(&section);
        }
    } else {
        cut_from = 0;
    }

    let cut = &plan.changes[cut_from..];
    if !cut.is_empty() {
        let mut names: Vec<String> = cut
            .iter()
            .take(NOTE_NAMES)
            .map(|c| format!("`{}`", c.scheduler))
            .collect();
        if cut.len() > NOTE_NAMES {
            names.push("…".to_string());
        }
        let _ = writeln!(
            out,
            "> **Truncated** to stay under {limit} characters: details of {} of {} schedulers left out ({}). \
             Run `troupe plan` for the full plan.",
            cut.len(),
            plan.changes.len(),
            names.join(", ")
        );
    }
    if out.len() > limit {
        // Only when `limit` is smaller than the fixed header: cut on a character boundary.
        let mut end = limit;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn schedulers(n: usize) -> String {
    if n == 1 {
        "1 scheduler".to_string()
    } else {
        format!("{n} schedulers")
    }
}

/// Pretty JSON, as described by `schema/plan.schema.json`.
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).expect("a plan serialises to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::tests::{base, edit, image, live, replicas, state};
    use crate::domain::plan::{PlanOptions, plan};
    use crate::domain::room::RoomStatus::*;

    fn sample() -> Plan {
        let named = |n: &str| edit(base(), |s| s.name = n.to_string());
        let desired = vec![
            image(named("arena-eu"), "registry.example/arena:1.4.3"),
            named("arena-new"),
            replicas(named("arena-us"), 2),
        ];
        let live = state([
            live(&named("arena-eu"), 4, &[(Ready, 3), (Occupied, 1)], &[]),
            live(&named("arena-old"), 2, &[(Ready, 2)], &[]),
            live(&named("arena-us"), 4, &[(Ready, 2), (Allocated, 2)], &[]),
        ]);
        plan(
            &desired,
            &live,
            &PlanOptions {
                prune: false,
                revision: Some("abc123".into()),
            },
        )
    }

    #[test]
    fn text_lists_each_change_with_reasons_impact_and_totals() {
        let p = sample();
        let out = text(&p, false);
        let eu = &p.changes[0];
        let (from, to) = (
            eu.from_version.as_deref().unwrap(),
            eu.to_version.as_deref().unwrap(),
        );
        for line in [
            format!("Troupe plan {} for revision abc123", p.id),
            format!("  -/+ arena-eu will be rolled out: version {from} → {to}"),
            "      # image registry.example/arena:1.4.2 → 1.4.3".to_string(),
            "      rooms: 4 rooms to replace, 1 busy kept until free".to_string(),
            "      -    image: registry.example/arena:1.4.2".to_string(),
            "      +    image: registry.example/arena:1.4.3".to_string(),
            "  + arena-new will be created (4 rooms)".to_string(),
            "      rooms: 4 rooms to create".to_string(),
            "  ? arena-old is not in the revision and will be left alone".to_string(),
            "  ~ arena-us will be scaled (4 → 2 rooms)".to_string(),
            "      rooms: 2 rooms to remove".to_string(),
            "Plan: 1 to create, 0 to update in place, 1 to scale, 1 to roll out, 0 to converge, 0 to delete.".to_string(),
            "Rooms: 4 to create, 4 to replace, 2 to remove, 1 busy kept until free.".to_string(),
            "1 live scheduler is not in the revision and is left running (prune is off).".to_string(),
        ] {
            assert!(out.lines().any(|l| l == line), "missing line {line:?} in:\n{out}");
        }
        assert!(!out.contains('\x1b'), "no colour asked for");
    }

    /// [`sample`] with the API server refusing the pods of the rollout of `arena-eu`.
    fn refused_sample() -> Plan {
        let mut p = sample();
        p.changes[0].admission = Some(crate::domain::admission::Refusal {
            declared: Some(crate::domain::spec::Declared {
                file: "fleets/arena.yaml".into(),
                line: 3,
            }),
            reason: "pods \"arena-eu-admit-x\" is forbidden: violates PodSecurity \"restricted:latest\": privileged".into(),
        });
        p
    }

    #[test]
    fn text_shows_a_refusal_on_its_change_with_file_and_line_and_says_the_plan_would_fail() {
        let out = text(&refused_sample(), false);
        let lines: Vec<&str> = out.lines().collect();
        let at = lines
            .iter()
            .position(|l| {
                *l == "      ! fleets/arena.yaml:3: refused by the API server: pods \"arena-eu-admit-x\" \
                       is forbidden: violates PodSecurity \"restricted:latest\": privileged"
            })
            .unwrap_or_else(|| panic!("no refusal line in:\n{out}"));
        assert!(
            lines[..at]
                .iter()
                .any(|l| l.contains("arena-eu will be rolled out")),
            "under its own change:\n{out}"
        );
        assert_eq!(
            lines.last().copied(),
            Some(
                "Error: the API server refuses the pods of 1 scheduler (arena-eu): applying this \
                 plan would fail before any of their new rooms start."
            ),
            "{out}"
        );
        assert_eq!(out.matches("refused by the API server").count(), 1, "{out}");
        let coloured = text(&refused_sample(), true);
        assert!(
            coloured.contains(&format!("{RED}! fleets/arena.yaml:3: refused")),
            "{coloured}"
        );
        // Nothing refused, nothing said.
        assert!(!text(&sample(), false).contains("refuse"));
    }

    #[test]
    fn markdown_shows_a_refusal_in_the_header_and_in_its_section() {
        let md = markdown(&refused_sample(), DEFAULT_MARKDOWN_LIMIT);
        assert!(
            md.contains("> **Error:** the API server refuses the pods of 1 scheduler (`arena-eu`)"),
            "{md}"
        );
        assert!(
            md.contains(
                "> **Refused by the API server** (`fleets/arena.yaml:3`): pods \"arena-eu-admit-x\" is forbidden"
            ),
            "{md}"
        );
        let section = md.split("<details>").nth(1).unwrap();
        assert!(section.contains("arena-eu"), "in the section of arena-eu");
        assert!(section.contains("Refused by the API server"), "{section}");
        assert!(!markdown(&sample(), DEFAULT_MARKDOWN_LIMIT).contains("Refused"));
    }

    #[test]
    fn json_carries_the_refusal_and_leaves_it_out_when_there_is_none() {
        let out = json(&refused_sample());
        assert!(out.contains("\"admission\": {"), "{out}");
        assert!(out.contains("\"file\": \"fleets/arena.yaml\""), "{out}");
        assert!(!json(&sample()).contains("\"admission\""));
        let back: Plan = serde_json::from_str(&out).unwrap();
        assert_eq!(back, refused_sample());
    }

    #[test]
    fn colour_marks_added_and_removed_lines() {
        let out = text(&sample(), true);
        assert!(
            out.contains(&format!(
                "{GREEN}+    image: registry.example/arena:1.4.3{GREEN:#}"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "{RED}-    image: registry.example/arena:1.4.2{RED:#}"
            )),
            "{out}"
        );
    }

    #[test]
    fn in_sync_says_so() {
        let live = state([live(&base(), 4, &[(Ready, 4)], &[])]);
        let p = plan(
            &[base()],
            &live,
            &PlanOptions {
                prune: false,
                revision: Some("abc123".into()),
            },
        );
        assert!(text(&p, false).ends_with("No changes. Live state matches revision abc123.\n"));
        assert!(
            markdown(&p, DEFAULT_MARKDOWN_LIMIT)
                .contains("**No changes.** Live state matches revision abc123.")
        );
    }

    #[test]
    fn markdown_has_a_table_and_a_section_per_change() {
        let p = sample();
        let md = markdown(&p, DEFAULT_MARKDOWN_LIMIT);
        assert!(
            md.contains("| `arena-eu` | `-/+` rollout | 0 | 4 | 0 | 1 |"),
            "{md}"
        );
        assert!(
            md.contains("| `arena-us` | `~` scale | 0 | 0 | 2 | 0 |"),
            "{md}"
        );
        assert_eq!(md.matches("<details>").count(), p.changes.len());
        assert!(md.contains("```diff\n--- live/arena-eu\n"), "{md}");
        assert!(md.contains("- image registry.example/arena:1.4.2 → 1.4.3"));
        assert!(!md.contains("Truncated"));
    }

    #[test]
    fn markdown_for_500_rollouts_stays_under_the_limit_and_says_what_was_cut() {
        let mut desired = Vec::new();
        let mut live_schedulers = Vec::new();
        for i in 0..500 {
            let s = edit(base(), |s| s.name = format!("arena-{i:03}"));
            live_schedulers.push(live(&s, 4, &[(Ready, 3), (Occupied, 1)], &[]));
            desired.push(image(s, "registry.example/arena:1.4.3"));
        }
        let p = plan(&desired, &state(live_schedulers), &PlanOptions::default());
        let md = markdown(&p, DEFAULT_MARKDOWN_LIMIT);
        assert!(
            md.len() <= DEFAULT_MARKDOWN_LIMIT,
            "{} characters",
            md.len()
        );
        let shown = md.matches("<details>").count();
        assert!(shown > 0 && shown < 500, "{shown} sections");
        assert_eq!(
            md.matches("</details>").count(),
            shown,
            "no section cut in half"
        );
        let note = format!("details of {} of 500 schedulers left out", 500 - shown);
        assert!(
            md.contains(&note),
            "missing {note:?} in the tail:\n{}",
            &md[md.len() - 400..]
        );
        assert!(
            md.contains(&format!("`arena-{shown:03}`")),
            "the note names the first one cut"
        );

        let small = markdown(&p, 5_000);
        assert!(small.len() <= 5_000);
        assert!(small.contains("more not shown"), "table rows cut too");
        assert!(small.contains("details of 500 of 500 schedulers left out"));
        assert!(markdown(&p, 10).len() <= 10);
    }

    #[test]
    fn markdown_fences_a_diff_that_contains_backticks() {
        let p = plan(
            &[image(base(), "registry.example/arena:```")],
            &state([live(&base(), 4, &[(Ready, 4)], &[])]),
            &PlanOptions::default(),
        );
        let md = markdown(&p, DEFAULT_MARKDOWN_LIMIT);
        assert!(md.contains("````diff\n"), "{md}");
    }

    #[test]
    fn json_is_pretty_and_camel_case() {
        let out = json(&sample());
        assert!(out.contains("\n  \"changes\": ["));
        assert!(out.contains("\"keptBusy\": 1"));
        assert!(out.contains("\"action\": \"rollout\""));
    }
}
