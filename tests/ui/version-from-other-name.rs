use netabase::NetabaseModel;

#[derive(NetabaseModel, Clone)]
#[netabase(name = "Old")]
struct Old {
    #[primary_key]
    id: u64,
}

#[derive(NetabaseModel, Clone)]
#[netabase(name = "New", version = 2, from = Old)]
struct New {
    #[primary_key]
    id: u64,
}

impl From<Old> for New {
    fn from(old: Old) -> Self {
        New { id: old.id }
    }
}

fn main() {}
