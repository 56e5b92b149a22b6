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
    /// A PinnedDispatcher always runs a dedicated thread per actor; it takes no executor setting.
    /// Logging levels and shutdown hooks are the host's policy (the command sets them), not the library's.
    /// </summary>
    public const string Text = """
        metamae {
          learner-dispatcher { type = PinnedDispatcher }
          evaluator-dispatcher { type = PinnedDispatcher }
          # The data plane beside remoting: a learner replica's ring collectives and a data node's batch plane (batches to
          # learners on other nodes; off: every feed is a stream reference over remoting) each bind the first free port of
          # port .. port + port-range - 1 (0: any free port), on the interface remoting uses.
          data-plane { port = 0, port-range = 16, batches = on }
        }
        """;

    public static Config Dispatchers => ConfigurationFactory.ParseString(Text);

    /// <summary>For an ActorSystem made without Akka.Hosting: the dispatchers plus the serializer of every message.</summary>
    public static Config Config => Dispatchers.WithFallback(ConfigurationFactory.ParseString(Protocol.MetaMaeSerializer.Hocon));
}
