// Every error is reported in one compile, not just the first.
use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct Everything {
    pub id: u64,
    #[secondary_key(unique, sorted)]
    pub email: String,
    #[secondary_key]
    pub score: f32,
    #[primarykey]
    pub name: String,
}

fn main() {}
