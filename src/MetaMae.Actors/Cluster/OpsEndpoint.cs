using System.Net;
using Akka.Actor;
using Prometheus;

namespace MetaMae.Actors.Cluster;

/// <summary>
/// A node's operations port (plain HTTP): <c>/alive</c> (200 while the actor system runs and the node has not been
/// downed or removed from the cluster: a liveness probe),
/// <c>/ready</c> (200 once the node is Up in its cluster, 503 before and after: a readiness probe) and
/// <c>/metrics</c> (Prometheus text format: <see cref="RunMetrics"/> and the process's own). Akka.NET's
/// Akka.Management has no health checks (its reference.conf says so), so this small listener serves them.
/// </summary>
public sealed class OpsEndpoint : IDisposable
{
    public const string AlivePath = "/alive";
    public const string ReadyPath = "/ready";
    public const string MetricsPath = "/metrics";

    private readonly HttpListener listener = new();
    private readonly ActorSystem system;
    private readonly CancellationTokenSource stop = new();

    public int Port { get; }

    public OpsEndpoint(ActorSystem system, int port, string host = "*")
    {
        this.system = system;
        Port = port;
        listener.Prefixes.Add($"http://{host}:{port}/");
        listener.Start();
        _ = Task.Run(Serve);
    }

    /// <summary>Up to the moment the node stops being a member: a downed or removed node fails its liveness probe at once.</summary>
    private bool Alive => !system.WhenTerminated.IsCompleted &&
                          Akka.Cluster.Cluster.Get(system).SelfMember.Status is not (Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed);
    private bool Ready => Alive && Akka.Cluster.Cluster.Get(system).SelfMember.Status == Akka.Cluster.MemberStatus.Up;

    private async Task Serve()
    {
        while (!stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception) when (stop.IsCancellationRequested || !listener.IsListening)
            {
                return;
            }
            _ = Task.Run(() => Answer(context));
        }
    }

    private async Task Answer(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            switch (context.Request.Url?.AbsolutePath)
            {
                case AlivePath:
                    await Text(response, Alive ? 200 : 503, Alive ? "alive\n" : "terminated\n");
                    break;
                case ReadyPath:
                    await Text(response, Ready ? 200 : 503, Ready ? "ready\n" : $"not ready: {Akka.Cluster.Cluster.Get(system).SelfMember.Status}\n");
                    break;
                case MetricsPath:
                    response.StatusCode = 200;
                    response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
                    await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(response.OutputStream);
                    break;
                default:
                    await Text(response, 404, $"{AlivePath}, {ReadyPath} or {MetricsPath}\n");
                    break;
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
        }
        finally
        {
            try
            {
                response.Close();
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    private static async Task Text(HttpListenerResponse response, int status, string body)
    {
        response.StatusCode = status;
        response.ContentType = "text/plain; charset=utf-8";
        var bytes = System.Text.Encoding.UTF8.GetBytes(body);
        await response.OutputStream.WriteAsync(bytes);
    }

    public void Dispose()
    {
        stop.Cancel();
        listener.Close();
    }
}

/// <summary>The run figures a coordinator node exports on its ops port (labelled by run).</summary>
internal static class RunMetrics
{
    public static readonly Counter Steps = Metrics.CreateCounter("metamae_steps_total", "Optimizer steps trained, each step once (see metamae_steps_retrained_total).", "run");
    public static readonly Counter StepsRetrained = Metrics.CreateCounter("metamae_steps_retrained_total",
        "Steps trained again after a resume, a re-form or a coordinator move (from the latest checkpoint).", "run");
    public static readonly Gauge Step = Metrics.CreateGauge("metamae_step", "The run's current step.", "run");
    public static readonly Gauge StepSeconds = Metrics.CreateGauge("metamae_step_seconds", "Seconds of the last step (forward, backward, reduce, AdamW).", "run");
    public static readonly Gauge SamplesPerSecond = Metrics.CreateGauge("metamae_samples_per_second", "Samples trained per second over the last step.", "run");
    public static readonly Gauge DataWaitSeconds = Metrics.CreateGauge("metamae_data_wait_seconds", "Seconds the learner waited for its batch before the last step.", "run");
    public static readonly Gauge AllReduceSeconds = Metrics.CreateGauge("metamae_allreduce_seconds", "Seconds of the last step spent in collectives between replicas.", "run");
    public static readonly Gauge Replicas = Metrics.CreateGauge("metamae_replicas", "Learner replicas in the run's current group.", "run");
    public static readonly Gauge BadRecords = Metrics.CreateGauge("metamae_bad_records", "Records the data nodes could not read, summed.", "run");
    public static readonly Gauge Probe = Metrics.CreateGauge("metamae_probe", "The latest linear-probe result per transfer set.", "run", "dataset", "metric");

    /// <summary>How long a finished run's series stay on /metrics: long enough for every scraper to see its last values.</summary>
    public static readonly TimeSpan Retention = TimeSpan.FromMinutes(10);

    private static readonly Dictionary<string, Timer> Forgetting = [];

    /// <summary>Records one step; <paramref name="retrained"/>: a step at or below one already trained in this run.</summary>
    public static void Record(Protocol.StepReport r, bool retrained = false)
    {
        (retrained ? StepsRetrained : Steps).WithLabels(r.RunId).Inc();
        Step.WithLabels(r.RunId).Set(r.Step);
        StepSeconds.WithLabels(r.RunId).Set(r.StepSeconds);
        SamplesPerSecond.WithLabels(r.RunId).Set(r.StepSeconds + r.WaitSeconds > 0 ? r.BatchSize / (r.StepSeconds + r.WaitSeconds) : 0);
        DataWaitSeconds.WithLabels(r.RunId).Set(r.WaitSeconds);
        AllReduceSeconds.WithLabels(r.RunId).Set(r.CommunicationSeconds);
    }

    /// <summary>The run ended on this node: its series go after <see cref="Retention"/> (a run resumed meanwhile keeps them).</summary>
    public static void Finished(string runId, TimeSpan? after = null)
    {
        lock (Forgetting)
        {
            if (Forgetting.Remove(runId, out var old)) old.Dispose();
            Forgetting[runId] = new Timer(_ => Forget(runId), null, after ?? Retention, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>A run (re)started here: it is not forgotten.</summary>
    public static void Started(string runId)
    {
        lock (Forgetting)
            if (Forgetting.Remove(runId, out var timer)) timer.Dispose();
    }

    /// <summary>Removes every series of <paramref name="runId"/> from /metrics.</summary>
    public static void Forget(string runId)
    {
        lock (Forgetting)
            if (Forgetting.Remove(runId, out var timer)) timer.Dispose();
        Remove(Steps, runId);
        Remove(StepsRetrained, runId);
        foreach (var g in new[] { Step, StepSeconds, SamplesPerSecond, DataWaitSeconds, AllReduceSeconds, Replicas, BadRecords, Probe }) Remove(g, runId);
    }

    private static void Remove<TChild>(Collector<TChild> collector, string runId) where TChild : ChildBase
    {
        foreach (var labels in collector.GetAllLabelValues().Where(l => l.Length > 0 && l[0] == runId).ToList()) collector.RemoveLabelled(labels);
    }
}
