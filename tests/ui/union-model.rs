use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub union Bits {
    int: u32,
    float: f32,
}

fn main() {}
