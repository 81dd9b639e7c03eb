use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct User {
    #[primary_key]
    pub id: u64,
    #[secondary_key(uniqe)]
    pub email: String,
}

fn main() {}
