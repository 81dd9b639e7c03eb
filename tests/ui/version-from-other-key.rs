use netabase::NetabaseModel;

#[derive(NetabaseModel, Clone)]
#[netabase(name = "Item")]
struct ItemV1 {
    #[primary_key]
    id: u64,
}

#[derive(NetabaseModel, Clone)]
#[netabase(name = "Item", version = 2, from = ItemV1)]
struct Item {
    #[primary_key]
    id: String,
}

impl From<ItemV1> for Item {
    fn from(old: ItemV1) -> Self {
        Item { id: old.id.to_string() }
    }
}

fn main() {}
