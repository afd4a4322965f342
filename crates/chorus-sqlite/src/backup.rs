//! Backup and restore of a Chorus database.
//!
//! A backup is `VACUUM INTO` on a read-only connection: one read
//! transaction, so the copy is consistent (every commit in it whole, none
//! half), taken while the server keeps writing (WAL readers never block the
//! writer). A restore puts a backup in place of a database no server is
//! using, after checking that it is a Chorus database.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::schema::{known_layout, APPLICATION_ID, SCHEMA_VERSION};
use crate::{lock_database, OpenError};

/// Checks that `path` is a Chorus database of a layout this build knows.
fn check(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let refused = |reason: String| OpenError::NotChorus { path: path.to_owned(), reason };
    let read = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    let app = read("PRAGMA application_id").map_err(|e| refused(format!("not a SQLite database ({e})")))?;
    if app != i64::from(APPLICATION_ID) {
        return Err(refused("not written by Chorus".into()));
    }
    let layout = read("PRAGMA user_version").map_err(|e| refused(e.to_string()))?;
    if !known_layout(layout) {
        return Err(OpenError::UnknownSchema { path: path.to_owned(), found: layout, known: SCHEMA_VERSION });
    }
    Ok(())
}

fn open_read_only(path: &Path) -> Result<Connection, OpenError> {
    if !path.is_file() {
        return Err(OpenError::Io { path: path.to_owned(), source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file") });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| OpenError::NotChorus { path: path.to_owned(), reason: e.to_string() })?;
    conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(OpenError::Sqlite)?;
    check(&conn, path)?;
    Ok(conn)
}

/// Writes a consistent copy of the database at `db` to `to` (which must
/// not exist), whether or not a server is using it.
pub fn backup(db: &Path, to: &Path) -> Result<(), OpenError> {
    if to.exists() {
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists; a backup never overwrites a file");
        return Err(OpenError::Io { path: to.to_owned(), source });
    }
    let conn = open_read_only(db)?;
    let target = to.to_str().ok_or_else(|| OpenError::Io {
        path: to.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a UTF-8 path"),
    })?;
    conn.execute("VACUUM INTO ?1", [target]).map_err(OpenError::Sqlite)?;
    Ok(())
}

/// Puts the backup `from` in place of the database at `db` (its folder
/// must exist), refusing while a server uses it.
pub fn restore(from: &Path, db: &Path) -> Result<(), OpenError> {
    drop(open_read_only(from)?);
    let _lock = lock_database(db)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    // The old database's write-ahead log must not be replayed onto the backup.
    for suffix in ["-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(Path::new(&name))(e)),
            _ => {}
        }
    }
    let partial = db.with_extension("restoring");
    std::fs::copy(from, &partial).map_err(io(&partial))?;
    std::fs::File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
    std::fs::rename(&partial, db).map_err(io(db))?;
    Ok(())
}
