//! Hosts x ports:  cargo run --example scan -- 198.18.0.2 22 80 81   (as root, e.g. in the lab)
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, ports) = args.split_first().ok_or("usage: scan TARGET PORT...")?;
    let ports: Vec<u16> = ports.iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
    let opts = synscope::ScanOptions::default().rate(1000);
    for r in synscope::scan(&[target.as_str()], &ports, &opts).await? {
        println!("{}:{} {:?} {:?}", r.host, r.port, r.state, r.rtt);
    }
    Ok(())
}
