//! Room log files: where a local room's stdout and stderr go, and the last line of one, which is
//! usually why a room died.
//!
//! Must always hold: reading a log for an exit reason is bounded (only the file's tail is read, and
//! only one shortened line is kept), whatever the room wrote.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Bytes read from the end of a log to find its last line: enough for any sane log line.
const TAIL_BYTES: u64 = 8 * 1024;
/// Longest last line kept in an exit reason, in characters; the reason ends up in room records.
const MAX_LINE_CHARS: usize = 300;

/// `state_dir/rooms/<scheduler>/<room>.log`.
pub fn log_path(state_dir: &Path, scheduler: &str, room: &str) -> PathBuf {
    state_dir
        .join("rooms")
        .join(scheduler)
        .join(format!("{room}.log"))
}

/// Whether `name` can be a path component as is (no separator, not `.`/`..`, not empty).
pub fn is_safe_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// The last non-empty line of the file at `path`, without terminal colour codes, shortened.
/// `None` when the file is missing, unreadable or blank.
pub fn last_line(path: &Path) -> Option<String> {
    let tail = read_tail(path).ok()?;
    last_line_of(&String::from_utf8_lossy(&tail))
}

fn read_tail(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
    let mut buf = Vec::with_capacity(TAIL_BYTES as usize);
    file.take(TAIL_BYTES).read_to_end(&mut buf)?;
    Ok(buf)
}

fn last_line_of(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(strip_ansi)
        .map(|l| l.trim().to_owned())
        .rfind(|l| !l.is_empty())?;
    if line.chars().count() > MAX_LINE_CHARS {
        let cut: String = line.chars().take(MAX_LINE_CHARS).collect();
        Some(format!("{cut}…"))
    } else {
        Some(line)
    }
}

/// Remove ANSI CSI sequences (`ESC [ … final`), which loggers write when they think they have a
/// terminal.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_non_empty_line_wins() {
        assert_eq!(
            last_line_of("a\nerror: bind failed\n\n  \n"),
            Some("error: bind failed".into())
        );
        assert_eq!(last_line_of("\n\n"), None);
        assert_eq!(last_line_of("no newline"), Some("no newline".into()));
    }

    #[test]
    fn colour_codes_are_stripped_and_long_lines_shortened() {
        assert_eq!(
            last_line_of("\u{1b}[2m2024\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m boom\n"),
            Some("2024 ERROR boom".into())
        );
        let long = "x".repeat(1000);
        let got = last_line_of(&long).unwrap();
        assert_eq!(got.chars().count(), MAX_LINE_CHARS + 1);
    }

    #[test]
    fn only_the_tail_of_a_big_log_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("room.log");
        let mut content = "filler line\n".repeat(100_000);
        content.push_str("the end\n");
        std::fs::write(&path, content).unwrap();
        assert_eq!(last_line(&path), Some("the end".into()));
        assert_eq!(last_line(&dir.path().join("missing.log")), None);
    }

    #[test]
    fn path_components_that_escape_the_directory_are_refused() {
        assert!(is_safe_component("arena-eu-1"));
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
    }
}
