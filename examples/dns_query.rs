//! One DNS query:  cargo run --example dns_query -- 198.18.0.2:53 www.lab.test A
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [server, name, rtype] = &args[..] else {
        return Err("usage: dns_query SERVER:PORT NAME TYPE".into());
    };
    let a = synscope::dns_query(server.parse()?, name, rtype, &Default::default()).await?;
    println!("{:?} {:?} in {:?}", a.rcode, a.answers, a.rtt);
    Ok(())
}
