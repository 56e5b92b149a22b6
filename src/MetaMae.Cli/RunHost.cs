using System.Runtime.InteropServices;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MetaMae.Actors;
using MetaMae.Actors.Coordination;
using MetaMae.Actors.Cluster;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;
using Spectre.Console;

namespace MetaMae.Cli;

/// <summary>How a run shows progress: a status line every few seconds, JSON lines, or nothing until the end.</summary>
public enum OutputMode { Human, Json, Quiet }

/// <summary>
/// What the process's exit code says about a run (README, "Reliability"): scripts and orchestrators act on it.
/// </summary>
public static class ExitCodes
{
    /// <summary>The run completed and every probe it owed reported.</summary>
    public const int Completed = 0;
    /// <summary>The run failed; the cause is printed, in the run record and in report.md.</summary>
    public const int Failed = 1;
    /// <summary>Nothing was started: bad arguments or config (the key is named), or the run directory is owned by another live process.</summary>
    public const int Refused = 2;
    /// <summary>Stopped by SIGINT or SIGTERM after a verified final checkpoint; `metamae resume RUN_DIR` continues it.</summary>
    public const int Stopped = 3;
    /// <summary>Stopped by a signal, but the final checkpoint was not written within stop_grace_seconds; resume continues from the previous one.</summary>
    public const int StoppedWithoutCheckpoint = 4;

    public static int For(RunFinished r) => r.Status switch
    {
        RunStatus.Completed => Completed,
        RunStatus.Stopped => Stopped,
        RunStatus.Aborted => StoppedWithoutCheckpoint,
        _ => Failed,
    };
}

/// <summary>
/// Hosts an actor system with Akka.Hosting, runs one run through the coordinator, shows progress, and stops cleanly on
/// SIGINT (Ctrl-C) and SIGTERM (docker stop, Kubernetes): a final checkpoint first, within the config's grace period.
/// A second signal ends the process at once.
/// </summary>
public static class RunHost
{
    /// <summary>
    /// Runs one run to its end on a cluster: a one-node cluster on loopback holding every role (<paramref name="node"/>
    /// null, the default for `metamae run`), or, as a client node, the cluster that <paramref name="node"/> joins.
    /// </summary>
    /// <param name="signals">The run's signal handling, installed by the command before the run directory exists; null: installed here.</param>
    public static RunFinished Execute(RunSpec config, string runId, string runDirectory, OutputMode output, RunStartOptions? options = null,
        NodeOptions? node = null, RunSignals? signals = null)
    {
        using var own = signals is null ? new RunSignals(config.StopGraceSeconds) : null;
        signals ??= own!;
        signals.For(runId, runDirectory);
        node ??= new NodeOptions { Roles = Roles.All, Hostname = "127.0.0.1", Port = 0 };
        using var host = StartNode(node);
        var system = host.Services.GetRequiredService<ActorSystem>();
        var manager = host.Services.GetRequiredService<ActorRegistry>().Get<RunManagerActor>();
        var stopRequested = signals.Requested;
        try
        {
            if (NodeHosting.AwaitJoin(system, node, TimeSpan.FromSeconds(60), failFast: true, Warn) is { } notJoined)
                return new RunFinished(runId, RunStatus.Failed, 0, Path.GetFullPath(runDirectory), [], notJoined);
            var progress = system.ActorOf(Props.Create(() => new ProgressActor(output, config.Steps)), "progress");
            var finished = new TaskCompletionSource<RunFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
            var submit = new SubmitRun(runId, Path.GetFullPath(runDirectory), config, options?.FromScratch ?? false, options?.Lock?.Token);
            signals.Attach(system.ActorOf(RunClientActor.Props(manager, submit, progress, finished), "client"));
            var grace = stopRequested.Task.ContinueWith(_ => Task.Delay(TimeSpan.FromSeconds(config.StopGraceSeconds)), TaskScheduler.Default).Unwrap();
            var first = Task.WhenAny(finished.Task, system.WhenTerminated, grace).GetAwaiter().GetResult();
            if (finished.Task.IsCompletedSuccessfully) return finished.Task.Result;
            if (first == grace)
            {
                var reason = $"stopped without a final checkpoint: it was not written within stop_grace_seconds ({config.StopGraceSeconds:0.#} s); " +
                             "`metamae resume` continues from the latest checkpoint";
                RecordAbort(runId, runDirectory, reason);
                return new RunFinished(runId, RunStatus.Aborted, 0, Path.GetFullPath(runDirectory), [], reason);
            }
            return new RunFinished(runId, RunStatus.Failed, 0, Path.GetFullPath(runDirectory), [], "the actor system stopped before the run finished");
        }
        finally
        {
            host.StopAsync().Wait(TimeSpan.FromSeconds(10));
        }
    }

    /// <summary>
    /// Follows a run a cluster coordinates (`metamae runs --cluster NODE --follow RUN`): joins as a client, prints its
    /// progress as `run --cluster` would, and returns its end; a run that ended already is answered from the record.
    /// Leaving (Ctrl-C, a kill) does not touch the run.
    /// </summary>
    public static RunFinished Follow(string runId, OutputMode output, NodeOptions node) => WithNode(node, (system, manager) =>
    {
        var progress = system.ActorOf(Props.Create(() => new ProgressActor(output, 0)), "progress");
        var finished = new TaskCompletionSource<RunFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        system.ActorOf(RunClientActor.Follow(manager, runId, progress, finished), "follower");
        Task.WhenAny(finished.Task, system.WhenTerminated).GetAwaiter().GetResult();
        return finished.Task.IsCompletedSuccessfully
            ? finished.Task.Result
            : new RunFinished(runId, RunStatus.Failed, 0, "", [], "the actor system stopped before the run finished");
    });

    /// <summary>
    /// Starts a node as the command hosts it: Akka.Hosting with the command's logging and Akka policy, and a lifetime
    /// that leaves SIGINT and SIGTERM to the command (a run's final checkpoint first, not the host stopping under it).
    /// </summary>
    /// <param name="jsonLogs">
    /// One JSON object per log line on stdout (Akka's log events routed through Microsoft.Extensions.Logging's JSON
    /// console: timestamp, level, category = the actor path's logger, message), for log collectors.
    /// </param>
    public static IHost StartNode(NodeOptions node, bool jsonLogs = false)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        if (jsonLogs) builder.Logging.AddJsonConsole(o => o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ");
        else builder.Logging.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true);
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        builder.Services.AddAkka(NodeOptions.SystemName, akka =>
        {
            akka.AddHocon(CommandHocon.Config, HoconAddMode.Prepend).WithMetaMaeNode(node);
            if (jsonLogs)
                // Nothing may bypass the JSON lines: Akka's stdout logger (used before its loggers start and after they
                // stop, at shutdown) is switched off.
                akka.AddHocon("akka.stdout-loglevel = OFF", HoconAddMode.Prepend).ConfigureLoggers(loggers =>
                {
                    loggers.LogLevel = Akka.Event.LogLevel.InfoLevel;
                    loggers.ClearLoggers();
                    loggers.AddLogger<StructuredAkkaLogger>();
                });
        });
        var host = builder.Build();
        host.Start();
        if (node.OpsPort is { } port)
        {
            var ops = new OpsEndpoint(host.Services.GetRequiredService<ActorSystem>(), port);
            host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(ops.Dispose);
        }
        return host;
    }

    /// <summary>Joins a cluster as <paramref name="node"/>, runs <paramref name="action"/> with the run manager, and leaves.</summary>
    public static T WithNode<T>(NodeOptions node, Func<ActorSystem, IActorRef, T> action)
    {
        using var host = StartNode(node);
        try
        {
            var system = host.Services.GetRequiredService<ActorSystem>();
            if (NodeHosting.AwaitJoin(system, node, TimeSpan.FromSeconds(60), failFast: true, Warn) is { } notJoined) throw new InvalidOperationException(notJoined);
            return action(system, host.Services.GetRequiredService<ActorRegistry>().Get<RunManagerActor>());
        }
        finally
        {
            host.StopAsync().Wait(TimeSpan.FromSeconds(10));
        }
    }

    private static void Warn(string message) => Console.Error.WriteLine($"warning: {message}");

    /// <summary>Best effort: the record says how the run ended even when its coordinator could not.</summary>
    internal static void RecordAbort(string runId, string runDirectory, string reason)
    {
        try
        {
            if (!RunRecord.Exists(RunRecord.RunsDirectoryOf(runDirectory))) return; // nothing recorded yet
            using var store = RunRecord.Open(RunRecord.RunsDirectoryOf(runDirectory));
            if (store.Runs().FirstOrDefault(r => r.Id == runId) is not { } row) return;
            store.FinishRun(runId, RunStatus.Aborted, row.Step, reason);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            Console.Error.WriteLine($"warning: could not record the abort: {e.Message}");
        }
    }

    private static readonly uint IdBase = (uint)Random.Shared.NextInt64(0, 1L << 32);
    private static long idCounter;

    /// <summary>
    /// A new run's id: the readable prefix (name, model, UTC time to the millisecond) and eight hex digits: a per-process
    /// random start plus a counter, so ids made in one process never repeat and ids of processes started together
    /// collide only if their random starts fall within a few ids of each other (and the directory lock refuses the
    /// second then).
    /// </summary>
    public static string NewRunId(RunSpec config) =>
        $"{config.Name}-{RunSpec.ConfigName(config.Model)}-{DateTime.UtcNow:yyyyMMdd-HHmmss-fff}-{unchecked(IdBase + (uint)Interlocked.Increment(ref idCounter)):x8}";
}

/// <summary>Receives step reports, checkpoints and evaluations and prints them as asked.</summary>
public sealed class ProgressActor : ReceiveActor
{
    private readonly DateTime started = DateTime.UtcNow;
    private DateTime lastPrint = DateTime.MinValue;
    private long firstStep = -1;
    private double waitSeconds, stepSeconds;
    private long samples;
    private readonly Dictionary<string, string> latestProbe = [];

    public ProgressActor(OutputMode mode, long totalSteps)
    {
        Receive<StepReport>(r =>
        {
            if (totalSteps <= 0) totalSteps = r.TotalSteps; // a follower learns it from the run
            if (firstStep < 0) firstStep = r.Step - 1;
            waitSeconds += r.WaitSeconds;
            stepSeconds += r.StepSeconds;
            samples += r.BatchSize;
            if (mode == OutputMode.Json) Console.WriteLine(JsonSerializer.Serialize(new { kind = "step", r.Step, r.Total, r.Recon, r.Contrastive, r.Support, r.GradNorm, r.StepSeconds, r.WaitSeconds }));
            else if (mode == OutputMode.Human && (DateTime.UtcNow - lastPrint > TimeSpan.FromSeconds(3) || r.Step == totalSteps))
            {
                lastPrint = DateTime.UtcNow;
                var elapsed = (DateTime.UtcNow - started).TotalSeconds;
                var done = r.Step - firstStep;
                var eta = done > 0 ? TimeSpan.FromSeconds(elapsed / done * (totalSteps - r.Step)) : TimeSpan.Zero;
                var wait = waitSeconds + stepSeconds > 0 ? 100 * waitSeconds / (waitSeconds + stepSeconds) : 0;
                var modalities = r.ReconImage is { } ri && r.ReconText is { } rt ? $": image {ri:F4}, text {rt:F4}" : "";
                var parts = r.Contrastive is { } c ? $" (recon {r.Recon:F4}{modalities}, contrastive {c:F4}, support {r.Support:F4})"
                    : modalities.Length > 0 ? $" (recon{modalities})" : "";
                var probes = latestProbe.Count > 0 ? "  probe " + string.Join(", ", latestProbe.Select(kv => $"{kv.Key} {kv.Value}")) : "";
                AnsiConsole.MarkupLineInterpolated($"step {r.Step}/{totalSteps}  loss {r.Total:F4}{parts}  {samples / Math.Max(elapsed, 1e-9):F1} samples/s  data wait {wait:F1}%  ETA {eta:hh\\:mm\\:ss}{probes}");
            }
        });
        Receive<EvaluationResult>(r =>
        {
            latestProbe[r.Dataset] = $"{r.Metric} {r.Value:F4} @{r.Step}";
            if (mode == OutputMode.Json) Console.WriteLine(JsonSerializer.Serialize(new { kind = "evaluation", r.Step, r.Dataset, r.Metric, r.Value }));
            else if (mode == OutputMode.Human) AnsiConsole.MarkupLineInterpolated($"[green]probe[/] step {r.Step}: {r.Dataset} {r.Metric} = {r.Value:F4} ({r.TrainSeconds:F1} s)");
        });
        Receive<EvaluationFailed>(f =>
        {
            if (mode != OutputMode.Quiet) AnsiConsole.MarkupLineInterpolated($"[yellow]evaluation failed[/] step {f.Step} {f.Dataset}: {f.Reason}");
        });
        Receive<RunWarning>(w =>
        {
            // Always said, --quiet included: the run went on, but not as planned.
            if (mode == OutputMode.Json) Console.WriteLine(JsonSerializer.Serialize(new { kind = "warning", w.Step, w.Message }));
            else Console.Error.WriteLine($"warning: step {w.Step}: {w.Message}");
        });
        Receive<CheckpointSaved>(c =>
        {
            if (mode == OutputMode.Json) Console.WriteLine(JsonSerializer.Serialize(new { kind = "checkpoint", c.Step, c.Path, c.Final }));
        });
        ReceiveAny(_ => { });
    }
}

/// <summary>The command decides when the host stops (after the run), so Ctrl-C is left to the run's own handler.</summary>
public sealed class CommandLifetime : IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>
/// SIGINT and SIGTERM for one run, from before its directory exists (a signal in a run's first seconds is as safe as
/// later): the first asks the run to stop with a final checkpoint, told to the run's client as soon as there is one
/// (it passes it on once the run is accepted); a second ends the process at once (exit 130 or 143, the signal's
/// default), the record saying the run was aborted.
/// </summary>
public sealed class RunSignals : IDisposable
{
    private readonly object gate = new();
    private readonly double graceSeconds;
    private readonly PosixSignalRegistration sigint, sigterm;
    private int count;
    private string? reason, runId, runDirectory;
    private IActorRef? client;

    /// <summary>Completed by the first signal.</summary>
    public TaskCompletionSource Requested { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public RunSignals(double graceSeconds)
    {
        this.graceSeconds = graceSeconds;
        sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, On);
        sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, On);
    }

    /// <summary>The run a second signal records as aborted.</summary>
    public void For(string id, string directory)
    {
        lock (gate) (runId, runDirectory) = (id, directory);
    }

    /// <summary>The run's client: told of a stop asked before it existed, and of any later one.</summary>
    public void Attach(IActorRef runClient)
    {
        lock (gate)
        {
            client = runClient;
            if (reason is not null) client.Tell(new StopRequested(reason));
        }
    }

    private void On(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref count) > 1)
        {
            // The default action ends the process now; the record must not say "running".
            string? id, directory;
            lock (gate) (id, directory) = (runId, runDirectory);
            if (id is not null && directory is not null)
                RunHost.RecordAbort(id, directory, "ended at once by a second signal, without a final checkpoint; `metamae resume` continues from the latest one");
            return;
        }
        context.Cancel = true; // keep the process: the coordinator writes a final checkpoint first
        var name = context.Signal == PosixSignal.SIGTERM ? "SIGTERM" : "Ctrl-C";
        Console.Error.WriteLine($"stopping ({name}): writing a final checkpoint within {graceSeconds:0.#} s (signal again to exit at once without it)");
        lock (gate)
        {
            reason = $"interrupted ({name})";
            client?.Tell(new StopRequested(reason));
        }
        Requested.TrySetResult();
    }

    public void Dispose()
    {
        sigint.Dispose();
        sigterm.Dispose();
    }
}
