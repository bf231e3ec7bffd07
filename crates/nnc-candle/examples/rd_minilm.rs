//! Rate–distortion of all-MiniLM-L6-v2 through NNC, measured on the model's output.
//!
//! Loads the model (`model.safetensors`, `tokenizer.json`, `config.json` from the cache
//! `cargo xtask fetch-models` fills) into candle-transformers' BERT and embeds a fixed set of 106
//! English sentences (mean pooling over the attention mask, L2 normalised, as sentence-transformers
//! does), once with the original weights and once per qp with the weights decoded from an NNC
//! bitstream made by [`nnc_candle::encode_tensors`] with the library's default options
//! (`EncodeOptions::default()`: DQ, row skipping, non-weight qp −75) and that qp.
//!
//! Per qp it prints: bitstream bytes, bits/param (stream bits over float parameters), the mean and
//! minimum over the sentences of the cosine similarity between a sentence's original and decoded
//! embedding, nearest-neighbour agreement (see [`Row::nn_top1`] and [`Row::nn_top5`]) and the
//! encode/decode wall time.
//!
//! ```text
//! cargo run -p nnc-candle --features rd-minilm --release --example rd_minilm -- \
//!     [--model-dir DIR] [--qp -20,-26,-32,-38,-44,-50] [--svg OUT.svg] [--json OUT.json] \
//!     [--min-cosine 0.99]
//! ```
//! `--qp` takes a comma-separated list and may be repeated. `--min-cosine X` makes the run exit
//! non-zero when any qp's mean cosine similarity is below X (CI: `--qp -38 --min-cosine 0.99`).
//! `cargo xtask rd-minilm` runs this example with the same arguments.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use nnc_tensor::EncodeOptions;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// qps measured when `--qp` is not given (coarse to fine).
const DEFAULT_QPS: [i32; 6] = [-20, -26, -32, -38, -44, -50];
/// Neighbours compared by the top-k agreement.
const TOP_K: usize = 5;

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

const USAGE: &str = "usage: rd_minilm [--model-dir DIR] [--qp Q[,Q...]]... [--svg PATH] \
                     [--json PATH] [--min-cosine X]";

struct Args {
    model_dir: PathBuf,
    qps: Vec<i32>,
    svg: Option<PathBuf>,
    json: Option<PathBuf>,
    min_cosine: Option<f64>,
}

fn parse_args() -> Res<Args> {
    let mut model_dir = None;
    let mut qps = Vec::new();
    let mut svg = None;
    let mut json = None;
    let mut min_cosine = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--model-dir" => model_dir = Some(PathBuf::from(value)),
            "--svg" => svg = Some(value.into()),
            "--json" => json = Some(value.into()),
            "--min-cosine" => min_cosine = Some(value.parse()?),
            "--qp" => {
                for q in value.split(',').filter(|q| !q.trim().is_empty()) {
                    qps.push(q.trim().parse().map_err(|e| format!("--qp {q:?}: {e}"))?);
                }
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    let model_dir = match model_dir {
        Some(d) => d,
        None => default_model_dir().ok_or("no cache directory: pass --model-dir")?,
    };
    if qps.is_empty() {
        qps = DEFAULT_QPS.to_vec();
    }
    Ok(Args {
        model_dir,
        qps,
        svg,
        json,
        min_cosine,
    })
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

fn tokenize(dir: &Path, dev: &Device) -> Res<Batch> {
    let mut tok = Tokenizer::from_file(dir.join("tokenizer.json"))?;
    tok.with_padding(Some(PaddingParams::default()));
    tok.with_truncation(Some(TruncationParams {
        max_length: 256,
        ..Default::default()
    }))?;
    let enc = tok.encode_batch(SENTENCES.to_vec(), true)?;
    let n = enc.len();
    let len = enc.first().map_or(0, |e| e.get_ids().len());
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

/// For every sentence, the indices of its `k` most similar other sentences (cosine similarity of
/// the embeddings), most similar first; ties keep the lower index first.
fn neighbours(e: &Tensor, k: usize) -> Res<Vec<Vec<usize>>> {
    let sim = e.matmul(&e.t()?)?.to_vec2::<f32>()?;
    Ok(sim
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut others: Vec<usize> = (0..row.len()).filter(|&j| j != i).collect();
            others.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
            others.truncate(k);
            others
        })
        .collect())
}

/// One measured qp.
struct Row {
    qp: i32,
    /// Size of the whole bitstream (all NNR units, headers included).
    bytes: usize,
    /// `8 * bytes` over the number of float parameters.
    bits_per_param: f64,
    /// Mean over the sentences of cos(original embedding, decoded embedding).
    mean_cos: f64,
    /// Minimum of the same.
    min_cos: f64,
    /// Fraction of sentences whose nearest other sentence (the top-1 retrieval result when the
    /// sentence is the query and the other 105 the corpus) is the same with decoded weights as
    /// with the original weights.
    nn_top1: f64,
    /// Mean over the sentences of |original top-5 ∩ decoded top-5| / 5.
    nn_top5: f64,
    encode_s: f64,
    decode_s: f64,
}

fn measure(
    qp: i32,
    weights: &HashMap<String, Tensor>,
    params: usize,
    ctx: (&Config, &Batch, &Tensor, &[Vec<usize>]),
) -> Res<Row> {
    let (config, batch, reference, reference_nn) = ctx;
    let opts = EncodeOptions::default().with_qp(qp);
    let t = Instant::now();
    let bytes = nnc_candle::encode_tensors(weights, &opts)?;
    let encode_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let decoded: HashMap<String, Tensor> = nnc_candle::decode_tensors(&bytes, &Device::Cpu)?
        .into_iter()
        .collect();
    let decode_s = t.elapsed().as_secs_f64();
    let e = embed(decoded, config, batch)?;
    let cos: Vec<f64> = (&e * reference)?
        .sum(1)?
        .to_vec1::<f32>()?
        .into_iter()
        .map(f64::from)
        .collect();
    let nn = neighbours(&e, TOP_K)?;
    let n = nn.len().max(1) as f64;
    let top1 = nn
        .iter()
        .zip(reference_nn)
        .filter(|(a, b)| a.first() == b.first())
        .count();
    let shared: usize = nn
        .iter()
        .zip(reference_nn)
        .map(|(a, b)| a.iter().filter(|j| b.contains(j)).count())
        .sum();
    Ok(Row {
        qp,
        bytes: bytes.len(),
        bits_per_param: bytes.len() as f64 * 8.0 / params as f64,
        mean_cos: cos.iter().sum::<f64>() / cos.len().max(1) as f64,
        min_cos: cos.iter().copied().fold(f64::INFINITY, f64::min),
        nn_top1: top1 as f64 / n,
        nn_top5: shared as f64 / (n * TOP_K as f64),
        encode_s,
        decode_s,
    })
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let dev = Device::Cpu;
    let dir = &args.model_dir;
    for f in ["model.safetensors", "tokenizer.json", "config.json"] {
        if !dir.join(f).is_file() {
            return Err(format!(
                "{} missing: run `cargo xtask fetch-models` or pass --model-dir",
                dir.join(f).display()
            )
            .into());
        }
    }
    let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &dev)?;
    let params: usize = weights
        .values()
        .filter(|t| t.dtype().is_float())
        .map(|t| t.elem_count())
        .sum();
    let batch = tokenize(dir, &dev)?;
    let reference = embed(weights.clone(), &config, &batch)?;
    let reference_nn = neighbours(&reference, TOP_K)?;
    eprintln!(
        "{} sentences, {} float parameters in {} tensors",
        SENTENCES.len(),
        params,
        weights.len()
    );

    let mut rows = Vec::new();
    for &qp in &args.qps {
        let row = measure(
            qp,
            &weights,
            params,
            (&config, &batch, &reference, &reference_nn),
        )?;
        eprintln!(
            "qp {qp}: {} bytes, mean cosine {:.6} (encode {:.1} s, decode {:.1} s)",
            row.bytes, row.mean_cos, row.encode_s, row.decode_s
        );
        rows.push(row);
    }

    print!("{}", table(&rows));
    if let Some(path) = &args.svg {
        std::fs::write(path, plot(&rows)?)?;
        eprintln!("plot written to {}", path.display());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, json(&rows, params)?)?;
        eprintln!("table written to {}", path.display());
    }
    if let Some(min) = args.min_cosine {
        if let Some(r) = rows
            .iter()
            .find(|r| r.mean_cos.is_nan() || r.mean_cos < min)
        {
            return Err(format!("qp {}: mean cosine {:.6} < {min}", r.qp, r.mean_cos).into());
        }
        eprintln!("every mean cosine >= {min}");
    }
    Ok(())
}

/// The table as Markdown.
fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| qp | bytes | bits/param | mean cosine | min cosine | NN top-1 agreement | \
         NN top-5 overlap | encode (s) | decode (s) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.3} | {:.6} | {:.6} | {:.1} % | {:.1} % | {:.2} | {:.2} |\n",
            r.qp,
            r.bytes,
            r.bits_per_param,
            r.mean_cos,
            r.min_cos,
            100.0 * r.nn_top1,
            100.0 * r.nn_top5,
            r.encode_s,
            r.decode_s
        );
    }
    s
}

fn json(rows: &[Row], params: usize) -> Res<String> {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "qp": r.qp,
                "bytes": r.bytes,
                "bits_per_param": r.bits_per_param,
                "mean_cosine": r.mean_cos,
                "min_cosine": r.min_cos,
                "nn_top1_agreement": r.nn_top1,
                "nn_top5_overlap": r.nn_top5,
                "encode_seconds": r.encode_s,
                "decode_seconds": r.decode_s,
            })
        })
        .collect();
    let doc = serde_json::json!({
        "model": "all-MiniLM-L6-v2",
        "sentences": SENTENCES.len(),
        "float_parameters": params,
        "encode_options": "EncodeOptions::default().with_qp(qp)",
        "rows": rows,
    });
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

/// Cosine similarity drawn on a "nines" scale: `-log10(1 - cos)`, so 0.9, 0.99, 0.999 are evenly
/// spaced (a linear axis squeezes every fine qp against 1.0).
fn nines(cos: f64) -> f64 {
    -(1.0 - cos).max(1e-9).log10()
}

/// SVG plot of bits/param (x) against mean cosine similarity (y, "nines" scale), each point
/// labelled with its qp; the minimum cosine is drawn as a second, dashed-looking series.
fn plot(rows: &[Row]) -> Res<String> {
    use plotters::prelude::*;

    let mut pts: Vec<&Row> = rows.iter().collect();
    pts.sort_by(|a, b| a.bits_per_param.total_cmp(&b.bits_per_param));
    let xs = pts.iter().map(|r| r.bits_per_param);
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
        (l.min(x), h.max(x))
    });
    let ys = pts
        .iter()
        .flat_map(|r| [nines(r.mean_cos), nines(r.min_cos)]);
    let (y_lo, y_hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), y| {
        (l.min(y), h.max(y))
    });
    if !(x_lo.is_finite() && y_lo.is_finite()) {
        return Err("nothing to plot".into());
    }
    let x_pad = ((x_hi - x_lo) * 0.1).max(0.25);
    let (x0, x1) = ((x_lo - x_pad).max(0.0), x_hi + x_pad);
    let (y0, y1) = ((y_lo - 0.3).floor().max(0.0), (y_hi + 0.3).ceil());

    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (820, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "all-MiniLM-L6-v2 through NNC: embedding similarity vs rate",
                ("sans-serif", 22),
            )
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("bits per parameter (bitstream bits / float parameters)")
            .y_desc("cosine similarity, original vs decoded (log scale of 1 - cos)")
            // Integer ticks: 0.9, 0.99, 0.999, ...
            .y_labels(((y1 - y0) as usize + 1).min(12))
            .y_label_formatter(&|y| {
                let digits = y.round().max(0.0) as usize;
                format!("{:.*}", digits, 1.0 - 10f64.powf(-y))
            })
            .x_label_formatter(&|x| format!("{x:.1}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(|e| e.to_string())?;

        let blue = RGBColor(31, 119, 180);
        let orange = RGBColor(255, 127, 14);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|r| (r.bits_per_param, nines(r.mean_cos))),
                blue.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label("mean over 106 sentences")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], blue.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|r| (r.bits_per_param, nines(r.min_cos))),
                orange.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label("minimum over 106 sentences")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], orange.stroke_width(1)));
        chart
            .draw_series(
                pts.iter()
                    .map(|r| Circle::new((r.bits_per_param, nines(r.min_cos)), 3, orange.filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(pts.iter().map(|r| {
                EmptyElement::at((r.bits_per_param, nines(r.mean_cos)))
                    + Circle::new((0, 0), 5, blue.filled())
                    + Text::new(
                        format!("qp {}", r.qp),
                        (-22, -24),
                        ("sans-serif", 14).into_font(),
                    )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
