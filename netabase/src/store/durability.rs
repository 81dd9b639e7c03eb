//! When a commit reaches the disk.

/// When a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is on disk (fsynced) when `commit` returns. The default.
    #[default]
    Immediate,
    /// Commits skip the fsync: much faster, and still atomic and isolated, but
    /// a crash or power loss can lose every commit since the last durable one.
    /// Call [`Store::flush`](super::Store::flush) to make everything committed so far durable.
    /// A killed process whose OS keeps running loses nothing already
    /// committed only if the OS writes its caches back, which is not promised.
    Eventual,
}

impl Durability {
    pub(crate) fn to_redb(self) -> redb::Durability {
        match self {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Eventual => redb::Durability::None,
        }
    }
}
