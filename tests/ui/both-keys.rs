use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct User {
    #[primary_key]
    #[secondary_key]
    pub id: u64,
}

fn main() {}
