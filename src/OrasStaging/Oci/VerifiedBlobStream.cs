using System.Threading.Channels;

namespace OrasStaging.Oci;

/// <summary>
/// The consumer side of <see cref="RegistryClient.OpenBlobAsync"/>: fetching, hashing and resuming happen in the
/// producer, ahead of the reader; the reader gets the producer's failure instead of the last bytes.
/// </summary>
internal sealed class VerifiedBlobStream : ChannelFedStream
{
    private readonly long _length;

    public VerifiedBlobStream(ChannelReader<PooledChunk> reader, CancellationTokenSource stop, Task producer, long length,
        ManualResetEventSlim written)
        : base(reader, stop, TimeSpan.FromSeconds(5), written)
    {
        Producer = producer;
        _length = length;
    }

    public override long Length => _length;
}
