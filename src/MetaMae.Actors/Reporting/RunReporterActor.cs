using Akka.Actor;
using MetaMae.Protocol;

namespace MetaMae.Actors.Reporting;

/// <summary>The counters of the data nodes, summed, for metrics.jsonl and TensorBoard.</summary>
internal sealed record DataMetricsAt(long Step, double SamplesPerSecond, double BytesPerSecond, long BadRecords, long RecordsRead, long QueuedSamples,
    string? Node = null);

/// <summary>A learner group formed: from step <see cref="Step"/>, <see cref="Replicas"/> replicas train global batches of <see cref="GlobalBatch"/>.</summary>
/// <summary>A learner group formed at <see cref="Step"/>; <see cref="Transport"/>: how its gradients travel ("tcp", "akka"; "" alone).</summary>
public sealed record GroupFormedAt(long Step, int Group, int Replicas, int GlobalBatch, string Reason, string Transport = "");

/// <summary>Every replica of the group had the same parameter digest at <see cref="Step"/>.</summary>
public sealed record ReplicasAgreeAt(long Step, int Group, int Replicas, string Digest);

/// <summary>Write plots and report.md now; answered with <see cref="FinalReportWritten"/>.</summary>
internal sealed record WriteFinalReport(RunStatus Status, long Step, string ConfigJson, IReadOnlyList<EvaluationResult> Results, string? Error,
    IReadOnlyList<EvaluationFailed> FailedProbes);

/// <summary>The final report is written, or what could not be.</summary>
internal sealed record FinalReportWritten(IReadOnlyList<string> Problems);

/// <summary>Writing the run's files failed: the run cannot go on without its metrics.</summary>
internal sealed record ReporterFailed(string Reason);

/// <summary>
/// Writes one run's files as its events arrive: metrics.jsonl and TensorBoard events per step, data counters and
/// evaluation, then the plots and report.md at the end. The first write that fails (a full disk) is reported to the
/// coordinator, which fails the run with it.
/// </summary>
internal sealed class RunReporterActor : ReceiveActor
{
    private readonly RunArtifacts artifacts;
    private readonly string runId;
    private bool failed;

    public RunReporterActor(string runId, string runDirectory)
    {
        this.runId = runId;
        artifacts = new RunArtifacts(runDirectory);
        Receive<StepReport>(r => Write("writing metrics.jsonl and TensorBoard events", () => artifacts.Step(r)));
        Receive<DataMetricsAt>(d => Write("writing data metrics", () =>
            artifacts.Data(d.Step, d.SamplesPerSecond, d.BytesPerSecond, d.BadRecords, d.RecordsRead, d.QueuedSamples, d.Node)));
        Receive<EvaluationResult>(r => Write("writing an evaluation to metrics.jsonl", () => artifacts.Evaluation(r)));
        Receive<GroupFormedAt>(g => Write("writing a group event to metrics.jsonl", () => artifacts.Group(g)));
        Receive<ReplicasAgreeAt>(a => Write("writing replica digests to metrics.jsonl", () => artifacts.Replicas(a)));
        Receive<WriteFinalReport>(f =>
        {
            FailPoints.Hit("artifacts.report");
            var problems = new List<string>();
            Try(problems, "write the plots", () => artifacts.Plots(f.Results));
            Try(problems, "write report.md", () => artifacts.Report(this.runId, f.Status, f.Step, f.ConfigJson, f.Results, f.Error, f.FailedProbes));
            Sender.Tell(new FinalReportWritten(problems));
        });
    }

    public static Props Props(string runId, string runDirectory) => Akka.Actor.Props.Create(() => new RunReporterActor(runId, runDirectory));

    private void Write(string what, Action action)
    {
        if (failed) return;
        try
        {
            action();
        }
        catch (Exception e)
        {
            failed = true;
            Context.Parent.Tell(new ReporterFailed($"{what} failed: {Failures.Describe(e)}"));
        }
    }

    private static void Try(List<string> problems, string what, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            problems.Add($"could not {what}: {Failures.Describe(e)}");
        }
    }

    protected override void PostStop()
    {
        try
        {
            artifacts.Dispose();
        }
        catch (IOException)
        {
            // a full disk fails the flush of a close; the failure was reported when the write failed
        }
    }
}
