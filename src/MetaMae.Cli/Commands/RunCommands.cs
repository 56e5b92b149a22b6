using System.CommandLine;
using System.Globalization;
using Akka.Actor;
using MetaMae.Actors;
using MetaMae.Actors.Coordination;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Runs;
using MetaMae.Data;
using MetaMae.Model.Checkpoints;
using MetaMae.Protocol;
using Spectre.Console;

namespace MetaMae.Cli.Commands;

/// <summary>run, pretrain, resume, evaluate, runs.</summary>
public static class RunCommands
{
    private static readonly Option<string?> ConfigOption = new("--config") { Description = "A run config (config/runs/NAME.json)." };
    private static readonly Option<string[]> SetOption = new("--set") { Description = "Override a key: --set steps=500 --set evaluation.epochs=50", AllowMultipleArgumentsPerToken = false };
    private static readonly Option<string?> ModelOption = new("--model") { Description = "mae or metamae." };
    private static readonly Option<string?> PresetOption = new("--preset") { Description = "Model size: dabs, small, tiny." };
    private static readonly Option<string?> DeviceOption = new("--device") { Description = "auto, cpu or cuda." };
    private static readonly Option<string?> PrecisionOption = new("--precision") { Description = "fp32, or bf16 matrix products with fp32 master weights." };
    private static readonly Option<long?> SeedOption = new("--seed") { Description = "Seed of initialisation, masking and data order." };
    private static readonly Option<string?> OutOption = new("--out") { Description = "Directory for run directories (default: runs)." };
    private static readonly Option<bool> JsonOption = new("--json") { Description = "Progress as JSON lines." };
    private static readonly Option<bool> QuietOption = new("--quiet") { Description = "No progress, only the result." };
    private static readonly Option<string?> ClusterOption = new("--cluster") { Description = "host:port of a node of a running cluster: submit the run there and follow it (its out directory must be shared)." };
    private static readonly Option<string> HostnameOption = new("--hostname") { Description = "With --cluster: this client's interface.", DefaultValueFactory = _ => "127.0.0.1" };

    public static IEnumerable<Command> Create() => [Run(), Pretrain(), Resume(), Evaluate(), Runs()];

    private static Command WithRunOptions(Command c)
    {
        foreach (var o in new Option[] { ConfigOption, SetOption, ModelOption, PresetOption, DeviceOption, PrecisionOption, SeedOption, OutOption, JsonOption, QuietOption, ClusterOption, HostnameOption })
            c.Add(o);
        return c;
    }

    private static RunSpec LoadConfig(ParseResult p, bool evaluate)
    {
        var sets = (p.GetValue(SetOption) ?? []).ToList();
        if (p.GetValue(ModelOption) is { } m) sets.Add($"model={m}");
        if (p.GetValue(PresetOption) is { } pr) sets.Add($"preset={pr}");
        if (p.GetValue(DeviceOption) is { } d) sets.Add($"device={d}");
        if (p.GetValue(PrecisionOption) is { } precision) sets.Add($"precision={precision}");
        if (p.GetValue(SeedOption) is { } s) sets.Add($"seed={s}");
        if (p.GetValue(OutOption) is { } o) sets.Add($"out=\"{o}\"");
        var config = RunSpec.Load(p.GetValue(ConfigOption), sets);
        return evaluate ? config : config with { Evaluation = config.Evaluation with { Datasets = [] } };
    }

    private static OutputMode Mode(ParseResult p) => p.GetValue(JsonOption) ? OutputMode.Json : p.GetValue(QuietOption) ? OutputMode.Quiet : OutputMode.Human;

    private static Command Run()
    {
        var compare = new Option<bool>("--compare-mae") { Description = "Also pretrain plain MAE on the same budget and compare." };
        var cmd = WithRunOptions(new Command("run", "Pretrain through the actor pipeline and probe the checkpoints (the main job)."));
        cmd.Add(compare);
        cmd.SetAction(p =>
        {
            var config = LoadConfig(p, evaluate: true);
            var finished = new List<(string Label, RunFinished Result)>();
            var main = Execute(config, Mode(p), Node(p));
            finished.Add((Label(config), main));
            if (p.GetValue(compare) && main.Status == RunStatus.Completed)
            {
                var other = config with { Model = config.Model == PretrainingModel.Mae ? PretrainingModel.MetaMae : PretrainingModel.Mae, Evaluation = config.Evaluation with { IncludeRandomInit = false } };
                finished.Add((Label(other), Execute(other, Mode(p), Node(p))));
            }
            PrintComparison(config, finished);
            return finished.Select(f => ExitCodes.For(f.Result)).FirstOrDefault(c => c != ExitCodes.Completed);
        });
        return cmd;
    }

    private static Command Pretrain()
    {
        var cmd = WithRunOptions(new Command("pretrain", "Pretrain only (no probes); checkpoints go to the run directory."));
        cmd.SetAction(p =>
        {
            return ExitCodes.For(Execute(LoadConfig(p, evaluate: false), Mode(p), Node(p)));
        });
        return cmd;
    }

    private static Command Resume()
    {
        var dir = new Argument<string>("RUN_DIR") { Description = "A run directory whose process stopped or was killed." };
        var fromScratch = new Option<bool>("--from-scratch") { Description = "If every checkpoint is corrupt, move them to corrupt-checkpoints/ and start over." };
        var cmd = new Command("resume", "Continue a run from its latest valid checkpoint, on the same data order; redo missing probes. " +
                                        "With --cluster, the cluster's coordinator continues it (a run that failed or was stopped there; RUN_DIR on the shared out directory).")
            { dir, fromScratch, JsonOption, QuietOption, ClusterOption, HostnameOption };
        cmd.SetAction(p =>
        {
            var runDir = Path.GetFullPath(p.GetValue(dir)!);
            var configPath = Path.Combine(runDir, "config.json");
            if (!File.Exists(configPath)) throw new ConfigException("RUN_DIR", $"{runDir} has no config.json: not a run directory");
            var config = RunSpec.Load(configPath, []);
            var cluster = Node(p);
            // On one node the command owns the directory; on a cluster the coordinator's node takes it (and refuses a run
            // another coordinator still holds).
            using var owned = cluster is null ? RunDirectoryLock.Acquire(runDir) : null; // refused (exit 2) while another process runs it
            var r = RunHost.Execute(config, Path.GetFileName(runDir), runDir, Mode(p), new RunStartOptions { Lock = owned, FromScratch = p.GetValue(fromScratch) },
                cluster);
            Summarise(r);
            if (config.Evaluation.Datasets.Count > 0) PrintComparison(config, [(Label(config), r)]);
            return ExitCodes.For(r);
        });
        return cmd;
    }

    private static Command Evaluate()
    {
        var checkpoint = new Argument<string>("CHECKPOINT") { Description = "A checkpoint directory (RUN/checkpoints/step-N)." };
        var dataset = new Option<string>("--dataset") { Description = "Transfer data set to probe.", Required = true };
        var root = new Option<string?>("--root") { Description = "Its directory, or 'embedded' (default: the run's, else embedded)." };
        var protocol = new Option<ProbeProtocol?>("--protocol") { Description = "standardized (converged, validated weight decay) or dabs (the paper's Adam schedule); default: the run's." };
        var epochs = new Option<int?>("--epochs") { Description = "Probe epochs of the dabs protocol (default: the run's evaluation.epochs)." };
        var lr = new Option<double?>("--lr") { Description = "Probe learning rate (default: the run's evaluation.lr)." };
        var weightDecay = new Option<double?>("--weight-decay") { Description = "Probe weight decay (default: the run's)." };
        var batch = new Option<int?>("--batch-size") { Description = "Probe batch size (default: the run's)." };
        var maxTrain = new Option<int?>("--max-train") { Description = "Cap on probe training samples (default: the run's for this set)." };
        var maxTest = new Option<int?>("--max-test") { Description = "Cap on probe test samples (default: the run's for this set)." };
        var cmd = new Command("evaluate", "Linear-probe one checkpoint's encoder on a transfer set, with the run's probe settings unless overridden.")
            { checkpoint, dataset, root, protocol, epochs, lr, weightDecay, batch, maxTrain, maxTest };
        cmd.SetAction(p =>
        {
            var path = Path.GetFullPath(p.GetValue(checkpoint)!);
            var (run, source) = RunEvaluation(path);
            var name = p.GetValue(dataset)!;
            var recorded = run.Datasets.FirstOrDefault(d => d.Name == name);
            var settings = run with
            {
                Protocol = p.GetValue(protocol) ?? run.Protocol,
                Epochs = p.GetValue(epochs) ?? run.Epochs, Lr = p.GetValue(lr) ?? run.Lr, WeightDecay = p.GetValue(weightDecay) ?? run.WeightDecay,
                BatchSize = p.GetValue(batch) ?? run.BatchSize,
            };
            // A set the run probed keeps its recorded settings (one's own data: its format and path).
            var ds = (recorded ?? new DatasetRef { Name = name }) with
            {
                Root = p.GetValue(root) ?? recorded?.Root ?? "embedded",
                MaxTrain = p.GetValue(maxTrain) ?? recorded?.MaxTrain, MaxTest = p.GetValue(maxTest) ?? recorded?.MaxTest,
            };
            settings = settings with { Datasets = [ds] };
            settings.Validate(prefix: "--"); // an override out of range is named before the checkpoint is read
            RunSpecs.ResolveDataset("--dataset", ds);
            if (!Directory.Exists(path)) throw new ConfigException("CHECKPOINT", $"{path} is not a directory (expected RUN/checkpoints/step-N)");
            Checkpoint.Verify(path);
            var meta = Checkpoint.ReadMeta(path);
            var caps = (ds.MaxTrain is { } mt ? $", at most {mt} train samples" : "") + (ds.MaxTest is { } ms ? $", at most {ms} test samples" : "");
            var schedule = settings.Protocol == ProbeProtocol.Dabs
                ? FormattableString.Invariant($", epochs {settings.Epochs}, lr {settings.Lr:G3}, weight decay {settings.WeightDecay:G3}, batch {settings.BatchSize}") : "";
            Console.WriteLine($"probe settings from {source}: protocol {RunSpec.ConfigName(settings.Protocol)}{schedule}{caps}");
            using var system = Akka.Actor.ActorSystem.Create("metamae-evaluate", CommandHocon.Config.WithFallback(MetaMaeHocon.Config));
            var evaluator = system.ActorOf(EvaluatorActor.Props(meta.RunId ?? "evaluate", ds, settings, meta.Config.ToConfig()), "evaluator");
            var reply = evaluator.Ask<object>(new CheckpointSaved(meta.RunId ?? "evaluate", meta.Step, path, true), Timeout.InfiniteTimeSpan).GetAwaiter().GetResult();
            system.Terminate().Wait();
            switch (reply)
            {
                case EvaluationResult r:
                    Console.WriteLine(FormattableString.Invariant($"{ds.Name} {r.Metric} = {r.Value:F4} (step {r.Step}, {r.TrainSamples} train / {r.TestSamples} test samples)"));
                    if (r.RawInput is { } raw) Console.WriteLine(FormattableString.Invariant($"{ds.Name} {r.Metric} = {raw:F4} on the raw input ({r.RawFeatures})"));
                    if (r.Method.Length > 0) Console.WriteLine($"probe: {r.Method}");
                    return 0;
                case EvaluationFailed f:
                    Console.Error.WriteLine($"error: evaluation failed: {f.Reason}");
                    return 1;
                default:
                    return 1;
            }
        });
        return cmd;
    }

    private static Command Runs()
    {
        var dir = new Option<string>("--out") { Description = "Directory holding runs.db.", DefaultValueFactory = _ => "runs" };
        var follow = new Option<string?>("--follow") { Description = "With --cluster: follow run RUN (its progress, then its end and exit code), e.g. after its client was killed." };
        var cmd = new Command("runs", "List runs recorded in runs.db (or by a cluster's coordinators) with their state and latest probe results.")
            { dir, ClusterOption, HostnameOption, follow, JsonOption, QuietOption };
        cmd.SetAction(p =>
        {
            if (p.GetValue(follow) is { } followed)
            {
                if (Node(p) is not { } client) throw new ConfigException("--follow", "follows a run on a cluster: give --cluster NODE");
                var r = RunHost.Follow(followed, Mode(p), client);
                Summarise(r);
                return ExitCodes.For(r);
            }
            List<RunSummary> runs;
            if (Node(p) is { } node)
            {
                var list = RunHost.WithNode(node, (_, manager) => manager.Ask<RunList>(ListRuns.Instance, TimeSpan.FromSeconds(30)).GetAwaiter().GetResult());
                if (list.Error is not null)
                {
                    Console.Error.WriteLine($"error: {list.Error}");
                    return ExitCodes.Failed;
                }
                runs = list.Runs.ToList();
                if (list.Nodes is { Count: > 0 } nodes)
                {
                    Output.Table(["node", "roles", "status", "reachable"], nodes.Select(n => (IReadOnlyList<string>)
                        [n.Address, n.Roles.Count == 0 ? "(client)" : string.Join(",", n.Roles), n.Status, n.Reachable ? "yes" : "NO"]));
                    foreach (var role in Protocol.Roles.All)
                        AnsiConsole.MarkupLineInterpolated($"{role}: {nodes.Count(n => n.Roles.Contains(role) && n.Status == "Up" && n.Reachable)} up");
                }
                AnsiConsole.MarkupLineInterpolated($"runs recorded in {list.Source} (live ones coordinated now)");
            }
            else
            {
                var db = RunRecord.Describe(p.GetValue(dir)!);
                if (Directory.Exists(db))
                {
                    Console.Error.WriteLine($"error: {db} is a directory, not a run record (an SQLite file); move it aside");
                    return ExitCodes.Refused;
                }
                if (!RunRecord.Exists(p.GetValue(dir)!))
                {
                    Console.WriteLine($"no runs recorded yet ({RunRecord.Describe(p.GetValue(dir)!)} does not exist)");
                    return 0;
                }
                using var store = RunRecord.Open(p.GetValue(dir)!); // a corrupt file: RunStoreException, exit 2 with its path
                runs = RunRecord.Summaries(store);
            }
            Output.Table(["run", "status", "step", "checkpoints", "latest probe", "warnings", "updated", "directory"], runs.Select(r => (IReadOnlyList<string>)
            [
                r.Id + (r.Live ? " (live)" : ""), r.Status.Text(), $"{r.Step}/{r.TotalSteps}", r.Checkpoints.ToString(CultureInfo.InvariantCulture),
                r.LatestProbes, r.Warnings.ToString(CultureInfo.InvariantCulture), r.Updated, r.Directory,
            ]));
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The probe settings of the run a checkpoint belongs to (RUN/config.json, as the coordinator wrote it), so a
    /// checkpoint is evaluated as its run evaluated it; the DABS defaults when there is no run config beside it.
    /// </summary>
    private static (EvaluationConfig Settings, string Source) RunEvaluation(string checkpoint)
    {
        var config = Path.GetFullPath(Path.Combine(checkpoint, "..", "..", "config.json"));
        if (!File.Exists(config)) return (new EvaluationConfig(), "the DABS defaults (no run config.json beside the checkpoint)");
        return (RunSpec.Bind(RunSpec.Read(config, [])).Evaluation, config);
    }

    private static string Label(RunSpec config) => config.Model == PretrainingModel.Mae ? "MAE" : "MetaMAE";

    /// <summary>With --cluster, a client node (no roles) joining that cluster; otherwise null: a one-node cluster of its own.</summary>
    private static NodeOptions? Node(ParseResult p) => p.GetValue(ClusterOption) is { } seed
        ? new NodeOptions { Roles = [], SeedNodes = [seed], Hostname = p.GetValue(HostnameOption)! }
        : null;

    private static RunFinished Execute(RunSpec config, OutputMode mode, NodeOptions? cluster)
    {
        // Signals are handled before the run directory exists: a SIGTERM in the first seconds stops the run as later ones do.
        using var signals = new RunSignals(config.StopGraceSeconds);
        string runId, runDir;
        do
        {
            runId = RunHost.NewRunId(config);
            runDir = Path.GetFullPath(Path.Combine(config.Out, runId));
        } while (Directory.Exists(runDir));
        signals.For(runId, runDir);
        // On one node the command owns the directory before anything starts (and hands the lock to the coordinator);
        // on a cluster the coordinator's node takes it. The directory appears with its config.json (written in a staging
        // directory, then renamed into place), so a directory a kill leaves in the first seconds is one `resume` continues.
        if (cluster is null)
        {
            var staging = Path.Combine(Path.GetDirectoryName(runDir)!, $".{runId}.staging");
            Directory.CreateDirectory(staging);
            File.WriteAllText(Path.Combine(staging, "config.json"), config.ToJson());
            Directory.Move(staging, runDir);
        }
        using var owned = cluster is null ? RunDirectoryLock.Acquire(runDir) : null;
        if (mode == OutputMode.Human)
            AnsiConsole.MarkupLineInterpolated($"[bold]{RunSpec.ConfigName(config.Model)}[/] on {config.Dataset.Name} ({config.Preset}, {config.Steps} steps, batch {config.EffectiveBatchSize}, seed {config.Seed}) -> {runDir}");
        var r = RunHost.Execute(config, runId, runDir, mode, new RunStartOptions { Lock = owned }, cluster, signals);
        Summarise(r);
        return r;
    }

    private static void Summarise(RunFinished r)
    {
        var colour = r.Status == RunStatus.Completed ? "green" : r.Status is RunStatus.Stopped or RunStatus.Aborted ? "yellow" : "red";
        AnsiConsole.MarkupLineInterpolated($"[{colour}]{r.Status.Text()}[/] at step {r.Step}: {r.RunDirectory}");
        if (r.Error is not null) Console.Error.WriteLine($"error: {r.Error}");
    }

    /// <summary>
    /// The final table: each data set's probe on the raw input (the anchor), the random encoder (step 0) and each
    /// pretrained encoder's last step; nothing when no probe finished (a failed run says so, and where its report is).
    /// </summary>
    private static void PrintComparison(RunSpec config, List<(string Label, RunFinished Result)> runs)
    {
        var rows = new List<IReadOnlyList<string>>();
        var methods = new List<string>();
        foreach (var ds in config.Evaluation.Datasets.Select(d => d.Name))
        {
            var all = runs.SelectMany(r => r.Result.Results).Where(e => e.Dataset == ds).ToList();
            if (all.FirstOrDefault(e => e.RawInput is not null) is { } anchor)
                rows.Add([ds, anchor.Metric, $"raw input ({anchor.RawFeatures})", "-", F(anchor.RawInput!.Value)]);
            if (all.FirstOrDefault(e => e.Step == 0) is { } random) rows.Add([ds, random.Metric, "random init", "0", F(random.Value)]);
            foreach (var (label, result) in runs)
                if (result.Results.Where(e => e.Dataset == ds && e.Step > 0).MaxBy(e => e.Step) is { } last)
                {
                    rows.Add([ds, last.Metric, label, last.Step.ToString(CultureInfo.InvariantCulture), F(last.Value)]);
                    if (last.Method.Length > 0 && !methods.Contains(last.Method)) methods.Add(last.Method);
                }
        }
        if (rows.Count > 0)
        {
            Output.Table(["data set", "metric", "encoder", "step", "value"], rows);
            foreach (var m in methods) Console.WriteLine($"probe: {m}");
        }
        foreach (var (label, result) in runs)
            if (File.Exists(Path.Combine(result.RunDirectory, "report.md"))) Console.WriteLine($"{label}: {result.RunDirectory}/report.md");
        static string F(double v) => v.ToString("F4", CultureInfo.InvariantCulture);
    }
}
