use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub struct Wrapper<T> {
    #[primary_key]
    pub id: u64,
    pub value: T,
}

fn main() {}
