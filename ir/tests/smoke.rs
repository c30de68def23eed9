use bnnc_ir::text::{parse, print};
use bnnc_ir::verify::verify;

const SRC: &str = r#"
# A small binary CNN block.
model block
weights "block.safetensors"

input x: f32[N, 8, 8, 3]
w0 = @conv0.w: f32[16, 3, 3, 3]
beta = [0.0, 0.1, -0.1]: f32[3]
xs = sub(x, beta)
xb = sign(xs, estimator=ste, clip=1.5)
wb = sign(w0)
c = conv2d(xb, wb, stride=2, padding=1, pad_value=-1)   # [N,4,4,16] i32
thr = [0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]: i32[16, 1]
t = threshold(c, thr)
p = maxpool2d(t, kernel=2)
r = replicate(p, times=2)
f = flatten(r)
output f, c
"#;

#[test]
fn parse_verify_print_round_trip() {
    let g = parse(SRC).unwrap_or_else(|e| panic!("{}", e.render("block.ir")));
    let types = verify(&g).unwrap_or_else(|e| panic!("{}", e.render("block.ir")));
    let printed = print(&g);
    println!("{printed}");
    let g2 = parse(&printed).unwrap();
    assert_eq!(g, g2);
    assert_eq!(print(&g2), printed);
    let names: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    assert_eq!(names.last().unwrap(), "b1[N, 128]");
    assert_eq!(
        types[g.find("c").unwrap().index()].to_string(),
        "i32[N, 4, 4, 16]"
    );
}
