use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct User {
    #[primary_key]
    pub id: u64,
    #[primary_key]
    pub email: String,
}

fn main() {}
