# vidkit training kernel, written by `python -m vidkit kernel mode=train`. The cell above (the inference
# kernel's helpers) finds and verifies the code dataset named by BUNDLE; this cell imports vidkit from it and
# cross-validates every config on the competition's data, internet off, under <root>/working/vidkit/. A
# previous version's output (this notebook's own, added as an input) is copied in first and resumed.
import time

KERNEL = "__VIDKIT_KERNEL__"  # this notebook's slug: its earlier output is found by it


def train_main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    os.environ.update(OFFLINE)  # before transformers is imported
    started = time.time()
    inputs, work = ROOT / "input", ROOT / "working"
    code, manifest = find_bundle(inputs)
    verify(code, manifest)
    sys.dont_write_bytecode = True  # the code dataset is read-only: no __pycache__ beside its sources
    sys.path.insert(0, str(code / "src"))
    from vidkit.kaggle.kernel_train import train_on_kaggle  # the image has no vidkit: this is the code dataset's

    data = find_data(inputs, code, manifest["competition"])
    print(f"vidkit kernel: code {code}, competition data {data}")
    train_on_kaggle(code, manifest, data, inputs, work, KERNEL, started)


train_main()
