"""The experiments of docs/RESULTS.md as data: protocols, cells (one trainer configuration each) and which
cells each experiment shows. experiments/run.py runs them; experiments/results.py reports them.

A cell runs once per framework and seed, in results/<protocol>/<cell>/<framework>-seed<k>/; a cell shown by
several experiments (the baseline) runs once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.cli import parse_train_args
from shared.config import Config

FRAMEWORKS = ("torch", "flax")
LR_VALUES = ("0.01", "0.03", "0.05", "0.1", "0.2")
INITS = ("torch", "flax", "xavier_uniform", "kaiming_normal")
INIT_NAMES = {"torch": "PyTorch default init", "flax": "flax default init", "xavier_uniform": "xavier_uniform",
              "kaiming_normal": "kaiming_normal"}
SCHEDULED = ("--schedule", "cosine", "--clip-grad-norm", "1.0")  # + the protocol's warmup
GOAL_ACC = 0.925  # the test accuracy the best cell aims for, in both frameworks
DISCUSSION_BEST = 0.909  # the best test accuracy reported in the d2l discussion


@dataclass(frozen=True)
class Cell:
    name: str
    flags: tuple[str, ...] = ()  # over the protocol's base flags
    label: str = ""  # what the tables call it
    seeds: str = "default"  # default | two (at least 2) | init (at least 5) | one
    same_init: bool = False  # both frameworks start from one init draw (--init-from), not each its own RNG's
    keep_weights: bool = False  # weights.safetensors stays (checkpoints never do)
    init: str | None = None  # the init experiment's cells: the init law (INITS) ...
    final_relu: bool | None = None  # ... and whether the final ReLU is on


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    budget: str  # how long a cell trains, for sentences comparing with the discussion's full trainings
    init_budget: str  # how long an init cell trains
    caveat: str  # how to read this protocol's numbers
    base: tuple[str, ...]  # every cell's flags start here
    init_base: tuple[str, ...]  # the short runs of the init experiment, over base
    warmup: str  # warmup steps of the scheduled runs
    seeds: int  # default seeds per cell
    base_is_adam: bool  # the base cell is already the Adam run of the optimizer experiment
    parity_flags: tuple[str, ...]  # the K-step drift check
    memory_sizes: tuple[int, ...]
    memory_batch: int
    best_flags: tuple[str, ...]
    cells: dict[str, Cell] = field(default_factory=dict)
    extras: bool = True  # run_extras' measurements (parity drift, noise floor, memory) belong to this protocol
    evaluate_runs: bool = False  # every finished run is evaluated (compare.evaluate) before its weights go


CPU = Protocol(
    name="cpu",
    budget="here each cell trains only 300 steps",
    init_budget="100 steps of Adam (batch 64)",
    caveat=("Cells train for 300 steps (init: 100), about a third of one epoch: they measure how fast a variant "
            "starts to learn, not where it ends. Where the discussion's figures come from 10-epoch runs at 224 px "
            "they are not comparable with these, and the text says so. Times are each run's own wall time; a few "
            "runs shared the 2 CPUs with other jobs, so speed belongs to `python -m bench.benchmark`."),
    description=("sized for a 2-core CPU: 67 px, the first 19,200 training images once (300 steps of batch 64), "
                 "the first 2,000 test images; Adam 1e-3 with 30 warmup steps and cosine decay unless a cell says "
                 "otherwise"),
    base=("--preset", "cpu", "--final-relu", "--image-size", "67", "--batch-size", "64", "--train-limit", "19200",
          "--epochs", "1", "--test-limit", "2000", "--warmup-steps", "30"),
    init_base=("--train-limit", "6400", "--test-limit", "1000"),
    warmup="30",
    seeds=2,
    base_is_adam=True,
    parity_flags=("--final-relu", "--image-size", "67", "--batch", "32", "--steps", "100"),
    memory_sizes=(67, 96, 224),
    memory_batch=32,
    best_flags=("--train-limit", "60000", "--test-limit", "10000", "--epochs", "2", "--label-smoothing", "0.1",
                "--warmup-steps", "100"),
)

GPU = Protocol(
    name="gpu",
    budget="here 10 epochs at 224 px",
    init_budget="one epoch of SGD 0.1 at 224 px",
    caveat="The book's setting, comparable with the discussion's figures.",
    description=("the book's setting on a GPU: 224 px, the full training and test sets, SGD lr 0.1, batch 128, "
                 "10 epochs, xavier_uniform init (the d2l preset) unless a cell says otherwise"),
    base=("--preset", "d2l", "--device", "gpu", "--epochs", "10"),
    init_base=("--epochs", "1"),
    warmup="500",
    seeds=3,
    base_is_adam=False,
    parity_flags=("--image-size", "224", "--batch", "32", "--steps", "200", "--device", "gpu"),
    memory_sizes=(96, 224),
    memory_batch=128,
    best_flags=("--optimizer", "adam", "--lr", "1e-3", "--schedule", "cosine", "--warmup-steps", "500",
                "--epochs", "30", "--label-smoothing", "0.1"),
)

TRAINED_EPOCHS = 4
TRAINED = Protocol(
    name="trained",
    budget=f"here each cell trains {TRAINED_EPOCHS} full epochs at 67 px",
    init_budget=f"{TRAINED_EPOCHS} epochs of plain SGD 0.1 (batch 128, 67 px, final ReLU on)",
    caveat=(f"Every run ends its schedule: {TRAINED_EPOCHS} epochs of the full training set for every cell of a "
            "question (the head and bottleneck cells: one epoch at 128 px, so that the last feature map is 2x2, "
            "not 1x1). The two frameworks count as two samples of a variant (they drift apart no faster than two "
            "seeds of one framework: the noise floor); the num-1x1 cells have two seeds, so four samples each. "
            "The discussion's runs are 10 epochs at 224 px with SGD: closer to these than to the cpu protocol's, "
            "still not the same."),
    description=(f"the full training set (60,000 images) for {TRAINED_EPOCHS} epochs and the full test set, 67 px, "
                 "batch 128, the book's network (final ReLU on); Adam 1e-3 with 200 warmup steps and cosine decay "
                 "to zero unless a cell says otherwise; the SGD and init cells train as the discussion's readers "
                 "did (plain SGD at a constant rate, no momentum); the head and bottleneck cells at 128 px for one "
                 "epoch"),
    base=("--preset", "cpu", "--final-relu", "--epochs", str(TRAINED_EPOCHS), "--warmup-steps", "200"),
    init_base=(),
    warmup="200",
    seeds=1,
    base_is_adam=True,
    parity_flags=(),
    memory_sizes=(),
    memory_batch=0,
    best_flags=(),
    extras=False,
    evaluate_runs=True,
)

PROTOCOLS = {"cpu": CPU, "trained": TRAINED, "gpu": GPU}
# The noise floor (compare.noise_floor): one epoch of the cpu preset, with the grid's final ReLU
NOISE_FLOOR_FLAGS = ("--preset", "cpu", "--final-relu")

ARCH = {
    "num-1x1": ["n0", "n1", "base", "n3"],
    "mid-kernel": ["base", "k3"],
    "head": ["base", "fc"],
    "bottleneck": ["base", "lw96"],
}
EXPERIMENTS = ("num-1x1", "mid-kernel", "final-relu", "head", "resources", "bottleneck", "init", "lr",
               "optimizer-resolution", "best", "frameworks")
SGD_PLAIN = ("--optimizer", "sgd", "--schedule", "constant", "--warmup-steps", "0")  # as the readers ran it
AT_128 = ("--image-size", "128", "--epochs", "1", "--warmup-steps", "100")  # the last feature map 2x2, not 1x1


def trained_cells() -> dict[str, list[Cell]]:
    """The trained protocol's experiments: the headline (num-1x1) first, as the grid runs them."""
    base = Cell("base", (), "2 x 1x1 (d2l)", seeds="two")
    count = [Cell(f"n{k}", ("--num-1x1", str(k)), f"{k} x 1x1", seeds="two") if k != 2 else base for k in range(4)]
    sgd = {lr: Cell(f"sgd-{lr}", (*SGD_PLAIN, "--lr", lr), f"plain SGD {lr}, constant") for lr in ("0.1", "0.03")}
    init = [Cell(f"init-{law}" if law != "xavier_uniform" else "sgd-0.1", (*SGD_PLAIN, "--lr", "0.1", "--init", law)
                 if law != "xavier_uniform" else sgd["0.1"].flags, INIT_NAMES[law] + (" (d2l)" if law ==
                 "xavier_uniform" else ""), init=law, final_relu=True) for law in INITS]
    big = Cell("base-128", AT_128, "global average pooling, 384 -> 10 -> 10 (d2l), 128 px")
    return {
        "num-1x1": count,
        "final-relu": [Cell("base", (), "final ReLU on (d2l)", seeds="two"),
                       Cell("norelu", ("--no-final-relu",), "final ReLU off")],
        "lr": [sgd["0.1"], sgd["0.03"], Cell("base", (), "Adam 1e-3, warmup + cosine", seeds="two")],
        "init": init,
        "mid-kernel": [Cell("base", (), "1x1 mid convs (NiN)", seeds="two"),
                       Cell("k3", ("--mid-kernel", "3"), "3x3 mid convs")],
        "head": [big, Cell("fc-128", (*AT_128, "--head", "fc"), "fully connected head, 128 px")],
        "bottleneck": [big, Cell("lw96-128", (*AT_128, "--last-width", "96"), "last block 384 -> 96 -> 10, 128 px")],
        "resources": [*count, Cell("k3", ("--mid-kernel", "3"), "3x3 mid convs")],
        "optimizer-resolution": [],
        "best": [],
        "frameworks": count,
    }


def experiment_cells(protocol: Protocol) -> dict[str, list[Cell]]:
    """Experiment name -> the cells it shows, in table order."""
    if protocol.name == "trained":
        return trained_cells()
    arch = {
        "base": Cell("base", (), "2 x 1x1, 1x1 mid, GAP (d2l)"),
        "n0": Cell("n0", ("--num-1x1", "0"), "0 x 1x1"),
        "n1": Cell("n1", ("--num-1x1", "1"), "1 x 1x1"),
        "n3": Cell("n3", ("--num-1x1", "3"), "3 x 1x1"),
        "k3": Cell("k3", ("--mid-kernel", "3"), "3x3 mid convs"),
        "fc": Cell("fc", ("--head", "fc"), "fully connected head"),
        "lw96": Cell("lw96", ("--last-width", "96"), "last block 384 -> 96 -> 10"),
    }
    labels = {"num-1x1": {"base": "2 x 1x1 (d2l)"}, "mid-kernel": {"base": "1x1 mid convs (NiN)"},
              "head": {"base": "global average pooling"}, "bottleneck": {"base": "384 -> 10 -> 10 (d2l)"}}
    grid = {name: [Cell(arch[c].name, arch[c].flags, labels[name].get(c, arch[c].label)) for c in cells]
            for name, cells in ARCH.items()}
    grid["resources"] = [arch[c] for c in ("base", "n0", "n1", "n3", "k3", "fc", "lw96")]
    grid["init"] = [Cell(f"init-{init}-{'relu' if relu else 'norelu'}",
                         (*protocol.init_base, "--init", init, "--final-relu" if relu else "--no-final-relu"),
                         f"{INIT_NAMES[init]}, final ReLU {'on' if relu else 'off'}", seeds="init", init=init,
                         final_relu=relu)
                    for relu in (True, False) for init in INITS]
    grid["lr"] = [lr_cell(protocol, lr, kind) for kind in ("plain", "scheduled") for lr in LR_VALUES]
    sgd = lr_cell(protocol, "0.1", "scheduled")
    adam = ("--optimizer", "adam", "--lr", "1e-3", "--schedule", "cosine", "--warmup-steps", protocol.warmup)
    size = cell_config(protocol, Cell("base")).data.image_size
    grid["optimizer-resolution"] = [
        Cell("base", (), f"Adam 1e-3, {size} px") if protocol.base_is_adam else
        Cell("adam", adam, f"Adam 1e-3, {size} px", seeds="one"),
        Cell(sgd.name, sgd.flags, f"SGD 0.1 + warmup/cosine/clip, {size} px", seeds="one"),
        Cell("adam-96", (*adam, "--image-size", "96"), "Adam 1e-3, 96 px", seeds="one"),
        Cell("sgd-96", (*sgd.flags, "--image-size", "96"), "SGD 0.1 + warmup/cosine/clip, 96 px", seeds="one"),
    ]
    grid["best"] = [Cell("best", protocol.best_flags, "best found, trained longer", seeds="one", keep_weights=True),
                    Cell("best-norelu", (*protocol.best_flags, "--no-final-relu"), "the same without the final ReLU",
                         seeds="one", keep_weights=True)]
    grid["final-relu"] = []
    grid["frameworks"] = [Cell("base", (), "own init draw per framework"),
                          Cell("same-init", (), "one init draw, ported to both (--init-from)", same_init=True),
                          Cell("same-init-nodrop", ("--dropout", "0"), "one init draw, dropout off", same_init=True)]
    return grid


def cell_config(protocol: Protocol, cell: Cell) -> Config:
    """The config the trainers resolve for this cell (seed and output aside)."""
    return parse_train_args([*protocol.base, *cell.flags], "torch")


def lr_cell(protocol: Protocol, lr: str, kind: str) -> Cell:
    """Plain SGD (no momentum, as in d2l) at a constant rate, or with warmup, cosine decay and clipping."""
    schedule = (("--schedule", "constant", "--warmup-steps", "0") if kind == "plain" else
                (*SCHEDULED, "--warmup-steps", protocol.warmup))
    return Cell(f"lr-{lr}-{kind}", ("--optimizer", "sgd", "--lr", lr, *schedule),
                f"SGD {lr}, {'constant' if kind == 'plain' else 'warmup + cosine + clip 1.0'}", seeds="one")


def all_cells(protocol: Protocol, only: str | None = None) -> list[Cell]:
    """Every distinct cell to run, baseline first, in the order of EXPERIMENTS (or of one experiment)."""
    grid = experiment_cells(protocol)
    names = [only] if only else (list(grid) if protocol.name == "trained" else ["frameworks", *EXPERIMENTS])
    seen: dict[str, Cell] = {}
    for name in names:
        for cell in grid[name]:
            seen.setdefault(cell.name, cell)
    return list(seen.values())


def seed_count(cell: Cell, protocol: Protocol, seeds: int | None) -> int:
    n = seeds or protocol.seeds
    return {"default": n, "two": max(n, 2), "init": max(n, 5), "one": 1 if seeds is None else n}[cell.seeds]
