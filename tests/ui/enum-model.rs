use netabase::NetabaseModel;

#[derive(NetabaseModel)]
pub enum Shape {
    Circle { radius: u32 },
    Square { side: u32 },
}

fn main() {}
