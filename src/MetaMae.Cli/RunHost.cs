using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MetaMae.Actors;
using MetaMae.Actors.Runs;
using MetaMae.Protocol;
using Spectre.Console;

namespace MetaMae.Cli;

/// <summary>How a run shows progress: a status line every few seconds, JSON lines, or nothing until the end.</summary>
public enum OutputMode { Human, Json, Quiet }

/// <summary>
/// Hosts an actor system with Akka.Hosting, runs one run through the coordinator, shows progress, and stops cleanly on
/// Ctrl-C (a final checkpoint first).
/// </summary>
public static class RunHost
{
    public static RunFinished Execute(RunConfig config, string runId, string runDirectory, OutputMode output)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.SetMinimumLevel(LogLevel.Warning).AddSimpleConsole(o => o.SingleLine = true);
        // Ctrl-C must reach the coordinator (final checkpoint first), not stop the host and its actor system under it.
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        builder.Services.AddAkka("metamae", akka => akka.WithRunCoordinator(config, runId, runDirectory,
            system => system.ActorOf(Props.Create(() => new ProgressActor(output, config.Steps)), "progress")));
        using var host = builder.Build();
        host.Start();
        var coordinator = host.Services.GetRequiredService<ActorRegistry>().Get<RunCoordinatorActor>();
        int interrupts = 0;
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (Interlocked.Increment(ref interrupts) > 1) return; // a second Ctrl-C ends the process at once
            e.Cancel = true; // keep the process: the coordinator writes a final checkpoint first
            Console.Error.WriteLine("stopping: writing a final checkpoint (Ctrl-C again to abort without it)");
            coordinator.Tell(new StopRun("interrupted (Ctrl-C)"));
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var system = host.Services.GetRequiredService<ActorSystem>();
            var finished = coordinator.Ask<RunFinished>(RunCoordinatorActor.Start.Instance, Timeout.InfiniteTimeSpan);
            if (Task.WhenAny(finished, system.WhenTerminated).GetAwaiter().GetResult() != finished)
                return new RunFinished(runId, "failed", 0, Path.GetFullPath(runDirectory), [], "the actor system stopped before the run finished");
            return finished.GetAwaiter().GetResult();
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            host.StopAsync().Wait(TimeSpan.FromSeconds(10));
        }
    }

    public static string NewRunId(RunConfig config) => $"{config.Name}-{config.Model}-{DateTime.UtcNow:yyyyMMdd-HHmmss}";
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
                var parts = r.Contrastive is { } c ? $" (recon {r.Recon:F4}, contrastive {c:F4}, support {r.Support:F4})" : "";
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
