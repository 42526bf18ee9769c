//! The write transaction of one commit, with each table opened once.
//!
//! Opening a table in a redb write transaction looks it up in the table
//! tree, and closing it writes its root back: about 9,000 instructions per
//! open and close, and a deploy's submissions opened some 43 tables
//! (callgrind, `deployd bench`). The submissions of one commit touch the
//! same few tables, so [`CommitTables::open_table`] opens a table on first
//! use, hands the same open table to every later caller, and
//! [`CommitTables::commit`] closes them all once, before redb's commit.
//!
//! Callers keep redb's shape (`txn.open_table(DEF)?` and the table's own
//! methods), and redb's rule too: a table is open once at a time, so a
//! second open while the first is still held is `TableAlreadyOpen`, as it
//! would be from redb.

use std::any::TypeId;
use std::cell::{RefCell, RefMut};
use std::panic::Location;

use redb::{Key, Table, TableDefinition, TableError, TableHandle, Value, WriteTransaction};

/// One open table of unknown key and value types; the [`TypeId`] of
/// `(K, V)` says which.
trait OpenTable<'t> {
    fn types(&self) -> TypeId;
}

impl<'t, K: Key + 'static, V: Value + 'static> OpenTable<'t> for RefCell<Table<'t, K, V>> {
    fn types(&self) -> TypeId {
        TypeId::of::<(K, V)>()
    }
}

struct Slot<'t> {
    name: String,
    /// Boxed, so its address stays put while the list grows.
    table: Box<dyn OpenTable<'t> + 't>,
}

pub(crate) struct CommitTables<'t> {
    txn: &'t WriteTransaction,
    /// Few (one per table a commit touches): a scan beats hashing names.
    open: RefCell<Vec<Slot<'t>>>,
}

impl<'t> CommitTables<'t> {
    pub(crate) fn new(txn: &'t WriteTransaction) -> Self {
        Self {
            txn,
            open: RefCell::new(Vec::new()),
        }
    }

    /// The table, opened for this commit on first use.
    #[track_caller]
    pub(crate) fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        definition: TableDefinition<K, V>,
    ) -> Result<RefMut<'_, Table<'t, K, V>>, TableError> {
        let name = definition.name();
        let found = self.open.borrow().iter().position(|slot| slot.name == name);
        let index = match found {
            Some(index) => index,
            None => {
                let table = self.txn.open_table(definition)?;
                let mut open = self.open.borrow_mut();
                open.push(Slot {
                    name: name.to_string(),
                    table: Box::new(RefCell::new(table)),
                });
                open.len() - 1
            }
        };
        let open = self.open.borrow();
        let slot = &open[index];
        if slot.table.types() != TypeId::of::<(K, V)>() {
            // Two definitions of one name with different types: redb
            // refuses that too.
            return Err(TableError::TableTypeMismatch {
                table: name.to_string(),
                key: K::type_name(),
                value: V::type_name(),
            });
        }
        let erased: *const (dyn OpenTable<'t> + 't) = &*slot.table;
        // SAFETY: the slot holds a `RefCell<Table<'t, K, V>>`: its
        // `types()` is the `TypeId` of `(K, V)`, checked above, and only
        // `RefCell<Table<'t, K, V>>` implements `OpenTable<'t>` (this module
        // is its only implementor). The box is never dropped or moved
        // before `self` is (slots are only pushed; `commit` takes `self`),
        // so the reference lives as long as the `&self` borrow it is tied
        // to, even though the list's own borrow ends here.
        let cell = unsafe { &*erased.cast::<RefCell<Table<'t, K, V>>>() };
        drop(open);
        cell.try_borrow_mut()
            .map_err(|_| TableError::TableAlreadyOpen(name.to_string(), Location::caller()))
    }

    /// Closes every table this commit opened; the caller then commits the
    /// transaction.
    pub(crate) fn close(self) {
        drop(self.open.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTable};

    use super::*;

    const NUMBERS: TableDefinition<&str, u64> = TableDefinition::new("numbers");
    const SAME_NAME_OTHER_TYPES: TableDefinition<&str, &str> = TableDefinition::new("numbers");
    const WORDS: TableDefinition<u64, &str> = TableDefinition::new("words");

    fn database() -> (tempfile::TempDir, redb::Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("t.redb")).unwrap();
        (dir, db)
    }

    #[test]
    fn one_table_serves_every_open_and_everything_written_is_committed() {
        let (_dir, db) = database();
        let txn = db.begin_write().unwrap();
        let tables = CommitTables::new(&txn);
        tables.open_table(NUMBERS).unwrap().insert("a", 1).unwrap();
        {
            let mut words = tables.open_table(WORDS).unwrap();
            // Another table while one is held.
            tables.open_table(NUMBERS).unwrap().insert("b", 2).unwrap();
            words.insert(1, "one").unwrap();
        }
        let seen = tables
            .open_table(NUMBERS)
            .unwrap()
            .get("a")
            .unwrap()
            .map(|v| v.value());
        assert_eq!(seen, Some(1));
        assert_eq!(tables.open.borrow().len(), 2);
        tables.close();
        txn.commit().unwrap();

        let read = db.begin_read().unwrap();
        let numbers = read.open_table(NUMBERS).unwrap();
        assert_eq!(numbers.get("b").unwrap().map(|v| v.value()), Some(2));
        let words = read.open_table(WORDS).unwrap();
        assert_eq!(
            words.get(1).unwrap().map(|v| v.value().to_string()),
            Some("one".to_string())
        );
    }

    #[test]
    fn a_table_held_open_cannot_be_opened_again() {
        let (_dir, db) = database();
        let txn = db.begin_write().unwrap();
        let tables = CommitTables::new(&txn);
        let held = tables.open_table(NUMBERS).unwrap();
        assert!(matches!(
            tables.open_table(NUMBERS),
            Err(TableError::TableAlreadyOpen(..))
        ));
        drop(held);
        assert!(tables.open_table(NUMBERS).is_ok());
    }

    #[test]
    fn a_name_opened_with_other_types_is_refused() {
        let (_dir, db) = database();
        let txn = db.begin_write().unwrap();
        let tables = CommitTables::new(&txn);
        tables.open_table(NUMBERS).unwrap().insert("a", 1).unwrap();
        assert!(matches!(
            tables.open_table(SAME_NAME_OTHER_TYPES),
            Err(TableError::TableTypeMismatch { .. })
        ));
    }
}
