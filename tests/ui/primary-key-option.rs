use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct User {
    #[primary_key(auto)]
    pub id: u64,
}

fn main() {}
