//! "Remember me": the session token of a token-mode login, kept in `<config dir>/session.json` so the
//! next start logs in by itself. The file is as good as the password until the session expires or is
//! revoked, so it is readable by its owner only (mode 0600, in a 0700 folder when this creates it) and
//! written atomically (a temporary file renamed over it): a crash never leaves half a file.
//!
//! Pure file handling, no Bevy: the token plugin decides when to load, save and forget.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file's name in the config folder.
pub const FILE_NAME: &str = "session.json";

/// A remembered login.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct RememberedSession {
    /// The login server it belongs to (a session is only good there).
    pub login_url: String,
    /// The account's display name (shown while logging in by itself).
    pub name: String,
    pub session_token: String,
    /// Seconds since the Unix epoch.
    pub session_expires_at: u64,
}

impl std::fmt::Debug for RememberedSession {
    // Never the token: this ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RememberedSession")
            .field("login_url", &self.login_url)
            .field("name", &self.name)
            .field("session_expires_at", &self.session_expires_at)
            .finish_non_exhaustive()
    }
}

impl RememberedSession {
    /// Whether it can log in to `login_url` at `now` (Unix seconds): the same server, not expired.
    pub fn is_usable(&self, login_url: &str, now: u64) -> bool {
        same_url(&self.login_url, login_url) && now < self.session_expires_at
    }

    /// Whether it belongs to `login_url` (expired or not).
    pub fn is_for(&self, login_url: &str) -> bool {
        same_url(&self.login_url, login_url)
    }
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// Now, in seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The file in `dir`.
pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The session remembered in `dir`, if any. A file that does not parse is an `InvalidData` error.
pub fn load(dir: &Path) -> io::Result<Option<RememberedSession>> {
    let bytes = match fs::read(path_in(dir)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Remembers `session` in `dir` (created, mode 0700, if missing), replacing what was there.
pub fn save(dir: &Path, session: &RememberedSession) -> io::Result<()> {
    create_private_dir(dir)?;
    let json = serde_json::to_vec_pretty(session).map_err(io::Error::other)?;
    let temp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    // A leftover from a crash may have other permissions: start afresh so the mode below applies.
    match fs::remove_file(&temp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let written = (|| {
        let mut file = private_file(&temp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&temp, path_in(dir))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Forgets the session remembered in `dir`; answers whether there was one.
pub fn forget(dir: &Path) -> io::Result<bool> {
    match fs::remove_file(path_in(dir)) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: u64) -> RememberedSession {
        RememberedSession {
            login_url: "https://127.0.0.1:5443".into(),
            name: "alice".into(),
            session_token: "c2VjcmV0".into(),
            session_expires_at: expires_at,
        }
    }

    #[test]
    fn a_saved_session_loads_back_and_forgetting_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("conf").join("mmo");
        assert_eq!(load(&folder).unwrap(), None, "nothing remembered yet");
        save(&folder, &session(2_000_000_000)).unwrap();
        assert_eq!(load(&folder).unwrap(), Some(session(2_000_000_000)));

        save(&folder, &session(2_000_000_001)).unwrap();
        assert_eq!(
            load(&folder).unwrap(),
            Some(session(2_000_000_001)),
            "saving again replaces it"
        );
        let names: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file is left behind");

        assert!(forget(&folder).unwrap());
        assert_eq!(load(&folder).unwrap(), None);
        assert!(!forget(&folder).unwrap(), "forgetting twice is fine");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("mmo");
        save(&folder, &session(2_000_000_000)).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path_in(&folder)), 0o600);
        assert_eq!(mode(&folder), 0o700, "the folder it created is private too");

        // A stale temporary file with loose permissions does not leak its mode into the new file.
        let temp = folder.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        fs::write(&temp, "old").unwrap();
        fs::set_permissions(&temp, fs::Permissions::from_mode(0o644)).unwrap();
        save(&folder, &session(2_000_000_000)).unwrap();
        assert_eq!(mode(&path_in(&folder)), 0o600);
    }

    #[test]
    fn a_session_is_usable_on_its_own_server_until_it_expires() {
        let remembered = session(1_000);
        assert!(remembered.is_usable("https://127.0.0.1:5443", 999));
        assert!(
            remembered.is_usable("https://127.0.0.1:5443/", 999),
            "a trailing slash is the same server"
        );
        assert!(
            !remembered.is_usable("https://127.0.0.1:5443", 1_000),
            "expired"
        );
        assert!(
            !remembered.is_usable("https://example.org:5443", 999),
            "another server"
        );
        assert!(remembered.is_for("https://127.0.0.1:5443"));
    }

    #[test]
    fn a_damaged_file_is_an_invalid_data_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(path_in(dir.path()), "{ not json").unwrap();
        let error = load(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let text = format!("{:?}", session(1));
        assert!(
            text.contains("alice") && !text.contains("c2VjcmV0"),
            "{text}"
        );
    }
}
