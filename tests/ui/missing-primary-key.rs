use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct User {
    pub id: u64,
    #[secondary_key]
    pub email: String,
}

fn main() {}
