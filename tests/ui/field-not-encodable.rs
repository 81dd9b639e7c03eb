use netabase::NetabaseModel;

pub struct Opaque {
    pub inner: u32,
}

#[derive(NetabaseModel)]
pub struct Holder {
    #[primary_key]
    pub id: u64,
    pub opaque: Opaque,
}

fn main() {}
