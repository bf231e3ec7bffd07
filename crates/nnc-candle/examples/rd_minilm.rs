//! Rate–distortion of all-MiniLM-L6-v2 through NNC, measured on the model's output.
//!
//! Loads the model (`model.safetensors`, `tokenizer.json`, `config.json` from the cache
//! `cargo xtask fetch-models` fills) into candle-transformers' BERT, embeds a fixed set of English
//! sentences (mean pooling over the attention mask, L2 normalised, as sentence-transformers does)
//! with the original weights and with the weights decoded from NNC bitstreams at several qp, and
//! prints per qp: bits/param, file size, mean and minimum cosine similarity to the original
//! embeddings, and how often each sentence's nearest neighbour is unchanged.
//!
//! ```text
//! cargo run -p nnc-candle --features rd-minilm --release --example rd_minilm -- \
//!     [--model-dir DIR] [--qp -44,-38,-32,-26,-20] [--svg OUT.svg] [--min-cosine 0.99]
//! ```
//! `--min-cosine X` makes the run fail when a qp's mean cosine similarity is below X (CI: one qp,
//! `--qp -38 --min-cosine 0.99`).

use std::collections::HashMap;
use std::error::Error;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use nnc_tensor::EncodeOptions;
use tokenizers::{PaddingParams, Tokenizer};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const SENTENCES: &[&str] = &[
    "The cat sat quietly on the warm windowsill.",
    "A kitten was sleeping in the sunny window.",
    "Dogs love to chase balls in the park.",
    "My puppy runs after every ball I throw.",
    "The stock market fell sharply on Monday.",
    "Share prices dropped at the start of the week.",
    "Interest rates were raised by the central bank.",
    "The bank increased its lending rate again.",
    "She baked a chocolate cake for his birthday.",
    "He made a birthday cake with lots of chocolate.",
    "The recipe calls for two cups of flour.",
    "Add flour and sugar, then mix well.",
    "The train to Berlin was delayed by an hour.",
    "Our flight to Paris left two hours late.",
    "Traffic on the motorway was terrible this morning.",
    "The roads were jammed during the morning rush.",
    "Python is a popular programming language.",
    "Rust guarantees memory safety without a garbage collector.",
    "The compiler reported a type error on line twelve.",
    "The program crashed because of a null pointer.",
    "Neural networks can be compressed with quantization.",
    "Pruning removes small weights from a trained model.",
    "The weather forecast predicts heavy rain tomorrow.",
    "It will be stormy and wet later this week.",
    "The summer was unusually hot and dry.",
    "Snow covered the mountains all winter.",
    "He plays the violin in a local orchestra.",
    "She has been learning the piano since childhood.",
    "The concert was sold out within minutes.",
    "Tickets for the show disappeared almost instantly.",
    "The football team won the championship.",
    "Our club lost the final after extra time.",
    "Marathon runners train for months before a race.",
    "Swimming is good exercise for the whole body.",
    "The museum opened a new exhibition on ancient Egypt.",
    "Archaeologists discovered a tomb near the pyramids.",
    "The novel tells the story of a lonely lighthouse keeper.",
    "Her latest book is a thriller set in Venice.",
    "Children should eat plenty of fruit and vegetables.",
    "A balanced diet includes vegetables, grains and protein.",
    "The doctor prescribed antibiotics for the infection.",
    "He took medicine to treat his fever.",
    "The hospital hired twenty new nurses.",
    "Vaccines protect people from serious diseases.",
    "The company announced record profits this quarter.",
    "The firm reported its best earnings ever.",
    "Thousands of workers lost their jobs in the recession.",
    "Unemployment rose during the economic downturn.",
    "The government passed a new climate law.",
    "Parliament voted on the environmental bill.",
    "Solar panels turn sunlight into electricity.",
    "Wind turbines generate renewable power.",
    "The electric car can drive four hundred kilometres on one charge.",
    "Battery technology has improved dramatically.",
    "Astronomers found a planet orbiting a distant star.",
    "The telescope captured images of a faraway galaxy.",
    "The rocket launched successfully from the coast.",
    "Astronauts returned safely from the space station.",
    "The river flooded after days of rain.",
    "Firefighters battled the forest fire overnight.",
    "An earthquake shook the city early this morning.",
    "The volcano erupted, sending ash into the sky.",
    "I forgot my umbrella and got soaked.",
    "She lost her keys somewhere in the house.",
    "Please close the door when you leave.",
    "Could you pass me the salt, please?",
    "What time does the library open on Sundays?",
    "Where is the nearest train station?",
    "How much does this jacket cost?",
    "Is there a pharmacy open near here?",
    "The garden is full of roses and tulips.",
    "He planted tomatoes and peppers in spring.",
    "Bees are essential for pollinating crops.",
    "Farmers harvested the wheat in August.",
    "The old castle stands on a hill above the village.",
    "Tourists crowded the narrow streets of the old town.",
    "We rented a small cottage by the sea.",
    "The hotel room had a view of the harbour.",
    "Learning a new language takes patience.",
    "He practises Spanish vocabulary every evening.",
    "The teacher explained the math problem twice.",
    "Students must submit their essays by Friday.",
    "The university built a new research laboratory.",
    "Scientists published the results in a journal.",
    "The experiment confirmed the original hypothesis.",
    "Further studies are needed to verify the findings.",
    "The smartphone has a larger screen and better camera.",
    "The laptop battery lasts for ten hours.",
    "Passwords should be long and hard to guess.",
    "Hackers stole customer data from the website.",
    "The coffee shop on the corner makes excellent espresso.",
    "She drinks green tea every afternoon.",
    "The restaurant serves fresh seafood and pasta.",
    "We ordered pizza and watched a movie.",
    "The film won three awards at the festival.",
    "The actor gave a moving performance.",
    "My grandmother tells wonderful stories about her youth.",
    "The baby laughed when the dog licked her hand.",
    "They celebrated their wedding anniversary in Rome.",
    "The neighbours invited us to a barbecue.",
    "The bridge was closed for repairs.",
    "Construction of the new stadium is behind schedule.",
    "The printer is out of paper again.",
    "Meetings that could have been emails waste time.",
    "A quick brown fox jumps over the lazy dog.",
    "Time flies like an arrow; fruit flies like a banana.",
];

struct Args {
    model_dir: PathBuf,
    qps: Vec<i32>,
    svg: Option<PathBuf>,
    min_cosine: Option<f64>,
}

fn parse_args() -> Res<Args> {
    let mut args = Args {
        model_dir: default_model_dir().ok_or("no cache directory: pass --model-dir")?,
        qps: vec![-44, -38, -32, -26, -20],
        svg: None,
        min_cosine: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model-dir" => args.model_dir = value()?.into(),
            "--svg" => args.svg = Some(value()?.into()),
            "--min-cosine" => args.min_cosine = Some(value()?.parse()?),
            "--qp" => {
                args.qps = value()?
                    .split(',')
                    .map(|s| s.trim().parse())
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    Ok(args)
}

/// `$NNC_CACHE_DIR`, else `$XDG_CACHE_HOME/nnc`, else `$HOME/.cache/nnc` (the rule of
/// `cargo xtask fetch-models`), plus `all-MiniLM-L6-v2`.
fn default_model_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = var("NNC_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("nnc")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("nnc")))?;
    Some(cache.join("all-MiniLM-L6-v2"))
}

struct Batch {
    input_ids: Tensor,
    token_type_ids: Tensor,
    mask: Tensor,
}

fn tokenize(dir: &std::path::Path, dev: &Device) -> Res<Batch> {
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json"))?;
    tok.with_padding(Some(PaddingParams::default()));
    tok.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 256,
        ..Default::default()
    }))?;
    let enc = tok.encode_batch(SENTENCES.to_vec(), true)?;
    let (n, len) = (enc.len(), enc[0].get_ids().len());
    let mut ids = Vec::with_capacity(n * len);
    let mut mask = Vec::with_capacity(n * len);
    for e in &enc {
        ids.extend_from_slice(e.get_ids());
        mask.extend_from_slice(e.get_attention_mask());
    }
    let input_ids = Tensor::from_vec(ids, (n, len), dev)?;
    Ok(Batch {
        token_type_ids: input_ids.zeros_like()?,
        input_ids,
        mask: Tensor::from_vec(mask, (n, len), dev)?,
    })
}

/// Mean-pooled, L2-normalised sentence embeddings, `[sentences, hidden]`.
fn embed(weights: HashMap<String, Tensor>, config: &Config, b: &Batch) -> Res<Tensor> {
    let dev = b.input_ids.device();
    let vb = VarBuilder::from_tensors(weights, DType::F32, dev);
    let model = BertModel::load(vb, config)?;
    let hidden = model.forward(&b.input_ids, &b.token_type_ids, Some(&b.mask))?;
    let m = b.mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&m)?.sum(1)?;
    let pooled = summed.broadcast_div(&m.sum(1)?.clamp(1e-9, f64::MAX)?)?;
    let norm = pooled
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    Ok(pooled.broadcast_div(&norm)?)
}

/// Index of each sentence's nearest other sentence (cosine similarity).
fn nearest(e: &Tensor) -> Res<Vec<usize>> {
    let sim = e.matmul(&e.t()?)?.to_vec2::<f32>()?;
    Ok(sim
        .iter()
        .enumerate()
        .map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold((usize::MAX, f32::NEG_INFINITY), |best, (j, &s)| {
                    if s > best.1 {
                        (j, s)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect())
}

struct Row {
    qp: i32,
    bytes: usize,
    bits_per_param: f64,
    mean_cos: f64,
    min_cos: f64,
    nn_agree: f64,
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let dev = Device::Cpu;
    let dir = &args.model_dir;
    let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &dev)?;
    let params: usize = weights
        .values()
        .filter(|t| t.dtype().is_float())
        .map(|t| t.elem_count())
        .sum();
    let batch = tokenize(dir, &dev)?;
    let reference = embed(weights.clone(), &config, &batch)?;
    let reference_nn = nearest(&reference)?;
    eprintln!(
        "{} sentences, {} float parameters, {} tensors",
        SENTENCES.len(),
        params,
        weights.len()
    );

    let mut rows = Vec::new();
    for &qp in &args.qps {
        let opts = EncodeOptions::compress_defaults().with_qp(qp);
        let bytes = nnc_candle::encode_tensors(&weights, &opts)?;
        let decoded: HashMap<String, Tensor> = nnc_candle::decode_tensors(&bytes, &dev)?
            .into_iter()
            .collect();
        let e = embed(decoded, &config, &batch)?;
        let cos = (&e * &reference)?.sum(1)?.to_vec1::<f32>()?;
        let nn = nearest(&e)?;
        let agree = nn.iter().zip(&reference_nn).filter(|(a, b)| a == b).count();
        let row = Row {
            qp,
            bytes: bytes.len(),
            bits_per_param: bytes.len() as f64 * 8.0 / params as f64,
            mean_cos: cos.iter().map(|&c| f64::from(c)).sum::<f64>() / cos.len() as f64,
            min_cos: cos.iter().fold(f64::INFINITY, |m, &c| m.min(f64::from(c))),
            nn_agree: agree as f64 / nn.len() as f64,
        };
        eprintln!(
            "qp {qp}: {} bytes, mean cosine {:.6}",
            row.bytes, row.mean_cos
        );
        rows.push(row);
    }

    println!("| qp | bits/param | file size (bytes) | mean cosine | min cosine | NN agreement |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.3} | {} | {:.6} | {:.6} | {:.1} % |",
            r.qp,
            r.bits_per_param,
            r.bytes,
            r.mean_cos,
            r.min_cos,
            100.0 * r.nn_agree
        );
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&rows))?;
        eprintln!("plot written to {}", path.display());
    }
    if let Some(min) = args.min_cosine {
        if let Some(r) = rows.iter().find(|r| r.mean_cos < min) {
            return Err(format!("qp {}: mean cosine {:.6} < {min}", r.qp, r.mean_cos).into());
        }
    }
    Ok(())
}

/// A small line plot of bits/param (x) against mean cosine similarity (y), as plain SVG.
fn svg(rows: &[Row]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 70.0, 20.0, 30.0, 50.0);
    let mut pts: Vec<(f64, f64, i32)> = rows
        .iter()
        .map(|r| (r.bits_per_param, r.mean_cos, r.qp))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let span = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(x), h.max(x))
        });
        let pad = ((hi - lo) * 0.08).max(1e-6);
        (lo - pad, hi + pad)
    };
    let (x0, x1) = span(&mut pts.iter().map(|p| p.0));
    let (y0, y1) = span(&mut pts.iter().map(|p| p.1));
    let px = |x: f64| left + (x - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">all-MiniLM-L6-v2 through NNC: \
         embedding similarity vs rate</text>\n",
        w / 2.0
    );
    s += &format!(
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{b}\" stroke=\"black\"/>\n",
        b = h - bottom,
        r = w - right
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let (xv, yv) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        s += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{xv:.2}</text>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{yv:.4}</text>\n",
            px(xv),
            h - bottom + 16.0,
            left - 6.0,
            py(yv) + 4.0
        );
    }
    s += &format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">bits per parameter</text>\n\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">mean cosine similarity</text>\n",
        (left + w - right) / 2.0,
        h - 10.0,
        h / 2.0,
        h / 2.0
    );
    let line: Vec<String> = pts
        .iter()
        .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
        .collect();
    s += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n",
        line.join(" ")
    );
    for p in &pts {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">qp {}</text>\n",
            px(p.0),
            py(p.1),
            px(p.0) + 6.0,
            py(p.1) + 14.0,
            p.2
        );
    }
    s + "</svg>\n"
}
