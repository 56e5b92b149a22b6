using Akka.Configuration;

namespace MetaMae.Actors;

/// <summary>The HOCON the pipeline needs that Akka.Hosting has no API for: its dispatchers.</summary>
public static class MetaMaeHocon
{
    public const string LearnerDispatcher = "metamae.learner-dispatcher";
    public const string EvaluatorDispatcher = "metamae.evaluator-dispatcher";

    /// <summary>
    /// The learner and each evaluator get a thread of their own: a TorchSharp step runs start to finish on one thread
    /// (dispose scopes are per thread) and blocks it for seconds, which must not starve the default dispatcher.
    /// </summary>
    public const string Text = """
        metamae {
          learner-dispatcher { type = PinnedDispatcher, executor = thread-pool-executor }
          evaluator-dispatcher { type = PinnedDispatcher, executor = thread-pool-executor }
        }
        # The command stops the system itself after the run (and after a final checkpoint on Ctrl-C).
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        """;

    /// <summary>The dispatchers plus the binary serializer for batches.</summary>
    public static Config Config => ConfigurationFactory.ParseString(Text).WithFallback(ConfigurationFactory.ParseString(Protocol.BatchSerializer.Hocon));
}
