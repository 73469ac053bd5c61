namespace OrasStaging.Oci;

/// <summary>
/// Which error a request or download ends with once its retries have run out. A server that stopped answering
/// (no headers, or no body bytes, within <see cref="RegistryOptions.StallTimeout"/> on the last try) is
/// <see cref="ErrorCode.OperationTimeout"/>: the time limit is what gave up, and a script may wait and resume.
/// Every other failure (refused, reset, closed early) is <see cref="ErrorCode.RegistryUnavailable"/>.
/// </summary>
internal static class GiveUp
{
    /// <summary>The code for a failure whose last cause was <paramref name="last"/> (a connection failure).</summary>
    public static ErrorCode CodeFor(Exception? last) =>
        last is OperationCanceledException or TimeoutException || last?.InnerException is TimeoutException
            ? ErrorCode.OperationTimeout
            : ErrorCode.RegistryUnavailable;

    /// <summary>What a caller that falls back elsewhere (the withcache server, the checksum sidecar) treats as "not there".</summary>
    public static bool IsGiveUp(ErrorCode code) => code is ErrorCode.RegistryUnavailable or ErrorCode.OperationTimeout;
}
