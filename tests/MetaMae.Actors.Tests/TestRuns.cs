using System.Diagnostics;
using Akka.Actor;
using MetaMae.Actors.Runs;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;

namespace MetaMae.Actors.Tests;

/// <summary>Small, fast run configurations on the embedded data, and helpers to compare run outputs.</summary>
public static class TestRuns
{
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MetaMae.Actors.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("no MetaMae.Actors.sln above the test directory");
    }

    /// <summary>MetaMAE, tiny model, embedded Fashion-MNIST, batch 16, probes capped small.</summary>
    public static RunSpec Tiny(string outDir, long steps = 12, long every = 4, bool evaluate = false) => new()
    {
        Name = "test",
        Dataset = new DatasetRef { Name = "fashion-mnist", Root = "embedded" },
        Preset = "tiny",
        Steps = steps,
        BatchSize = 16,
        Lr = 1e-3,
        CheckpointEvery = every,
        KeepCheckpoints = 10,
        DataParallelism = 2,
        Threads = 1,
        Device = "cpu",
        Seed = 7,
        Out = outDir,
        Evaluation = new EvaluationConfig
        {
            Datasets = evaluate ? [new DatasetRef { Name = "fashion-mnist", Root = "embedded", MaxTrain = 300, MaxTest = 200 }] : [],
            Epochs = 20, Lr = 1e-3,
            // Specs name every checkpoint they expect a result for; the default (latest) skips stale ones and has its own specs.
            Backlog = ProbeBacklog.All,
        },
    };

    public static byte[] FinalWeights(string runDir, long step) =>
        File.ReadAllBytes(Path.Combine(runDir, "checkpoints", $"step-{step:D8}", Checkpoint.WeightsFile));

    /// <summary>The arguments of a small `metamae pretrain` of the embedded Fashion-MNIST (120 steps by default, as <see cref="StraightRun"/>).</summary>
    public static string[] PretrainArgs(string outDir, long steps = StraightRun.Steps, params string[] extra) =>
    [
        "pretrain", "--set", "dataset.name=fashion-mnist", "--set", "dataset.root=embedded", "--set", "preset=tiny",
        "--set", $"steps={steps}", "--set", "batch_size=16", "--set", "lr=0.001", "--set", "checkpoint_every=20", "--set", "keep_checkpoints=3",
        "--set", "threads=1", "--set", "device=cpu", "--set", "seed=3", "--set", "data_parallelism=2", "--set", "name=kill",
        "--out", outDir, "--quiet", .. extra,
    ];
}


/// <summary>A TestKit with the pipeline's dispatchers and a temporary directory removed afterwards.</summary>
public abstract class MetaMaeTestKit : Akka.TestKit.Xunit2.TestKit, IDisposable
{
    protected string Root { get; } = Directory.CreateTempSubdirectory("metamae-spec-").FullName;

    protected MetaMaeTestKit() : base(MetaMaeHocon.Config) { }

    private RunHosts? hosts;

    /// <summary>A learner, a data and an evaluator host in this system, as a node of every role has them (made once per spec).</summary>
    private protected RunHosts Hosts => hosts ??= new RunHosts(
        [Sys.ActorOf(Props.Create<LearnerHostActor>(), LearnerHostActor.Name)],
        [Sys.ActorOf(Props.Create<DataHostActor>(), DataHostActor.Name)],
        [Sys.ActorOf(Props.Create<EvaluatorHostActor>(), EvaluatorHostActor.Name)]);

    /// <summary>A coordinator of <paramref name="config"/>'s run on this system's <see cref="Hosts"/>, as a run manager makes it.</summary>
    protected IActorRef Coordinator(RunSpec config, string runId, string? runDirectory = null, IActorRef? progress = null, RunStartOptions? options = null) =>
        Sys.ActorOf(RunCoordinatorActor.Props(config, runId, runDirectory ?? Path.Combine(config.Out, runId), Hosts, progress, options));

    /// <summary>Runs <paramref name="config"/> through a coordinator of this system and waits for its end.</summary>
    protected async Task<RunFinished> RunAsync(RunSpec config, string runId, IActorRef? progress = null, RunStartOptions? options = null,
        TimeSpan? timeout = null)
    {
        var coordinator = Coordinator(config, runId, progress: progress, options: options);
        coordinator.Tell(StartRun.Instance, TestActor);
        return await ExpectMsgAsync<RunFinished>(timeout ?? TimeSpan.FromMinutes(3));
    }

    public new void Dispose()
    {
        FailPoints.Clear();
        base.Dispose();
        if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true);
        GC.SuppressFinalize(this);
    }
}
