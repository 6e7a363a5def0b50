//! One SYN probe:  cargo run --example syn_probe -- 198.18.0.2:80   (as root, e.g. in the lab)
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args().nth(1).ok_or("usage: syn_probe IP:PORT")?;
    let r = synscope::syn_ping(target.parse()?, &Default::default()).await?;
    println!("{} {:?} rtt {:?}", r.target, r.state, r.rtt);
    Ok(())
}
