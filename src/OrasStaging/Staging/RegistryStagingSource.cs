using System.Globalization;
using OrasStaging.Oci;

namespace OrasStaging.Staging;

/// <summary>The production source: the registry client resolves the reference and streams the verified blob.</summary>
internal sealed class RegistryStagingSource : IStagingSource, IResumableStagingSource
{
    /// <summary>The raw image size the nosi publisher puts on the image layer.</summary>
    internal const string ImageSizeAnnotation = "org.nosi.image.size";

    private readonly RegistryClient _client;
    private readonly QuietableSink _sink;
    private readonly ImageReference _reference;
    private readonly ResolveOptions _resolveOptions;
    private OrasImage? _image;

    public RegistryStagingSource(RegistryOptions options, ImageReference reference, ResolveOptions resolveOptions, IOperationSink sink)
    {
        _sink = new QuietableSink(sink);
        _client = new RegistryClient(options, _sink);
        _reference = reference;
        // No sidecar request while resolving: a nosi tag run that skips by digest makes manifest requests only. The
        // sidecar is cross-checked in OpenBlobAsync, once bytes will be pulled. (A containerDisk's layer search still
        // reads tar headers while resolving: it decides which layer, and so which digest, the image is.)
        _crossCheckSidecar = !resolveOptions.ManifestsOnly;
        _resolveOptions = resolveOptions.Copy();
        _resolveOptions.DeferSidecar = true;
    }

    private readonly bool _crossCheckSidecar;

    /// <summary>The choices the resolve runs with (tests check that none of the caller's is lost).</summary>
    internal ResolveOptions ResolveOptions => _resolveOptions;

    public async Task<ResolvedLayer> ResolveAsync(CancellationToken cancellationToken)
    {
        var image = await _client.ResolveAsync(_reference, _resolveOptions, cancellationToken).ConfigureAwait(false);
        _image = image;
        long? declared = null;
        var layer = image.Layers.FirstOrDefault(l => string.Equals(l.Digest, image.Digest, StringComparison.OrdinalIgnoreCase));
        if (layer is not null && layer.Annotations.TryGetValue(ImageSizeAnnotation, out var text)
            && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long size))
        {
            declared = size;
        }

        return new ResolvedLayer
        {
            Reference = image.Reference,
            Registry = image.Registry,
            Repository = image.Repository,
            Tag = image.Tag,
            ManifestDigest = image.ManifestDigest,
            Digest = image.Digest,
            Size = image.Size,
            MediaType = image.MediaType,
            Title = image.Title,
            DeclaredImageSize = declared ?? image.DeclaredSize,
            Convention = image.Convention,
            MemberPath = image.MemberPath,
        };
    }

    public async Task<Stream> OpenBlobAsync(ResolvedLayer layer, CancellationToken cancellationToken)
    {
        var image = _image ?? throw new InvalidOperationException("Resolve first.");
        if (_crossCheckSidecar)
        {
            await _client.CrossCheckSidecarAsync(image, cancellationToken).ConfigureAwait(false);
        }

        var stream = await _client.OpenBlobAsync(image, cancellationToken).ConfigureAwait(false);

        // From here the writer's bar (compressed bytes consumed, of the blob size) is the one to show; the
        // client's own download bar would alternate with it and reset the rate.
        _sink.QuietProgress = true;
        return stream;
    }

    public async Task<Stream> OpenBlobFromAsync(ResolvedLayer layer, long start, System.Security.Cryptography.IncrementalHash prefix, CancellationToken cancellationToken)
    {
        var stream = await _client.OpenBlobAsync(_image ?? throw new InvalidOperationException("Resolve first."), start, prefix, cancellationToken)
            .ConfigureAwait(false);
        _sink.QuietProgress = true;
        return stream;
    }

    public IReadOnlyList<string> BlobSources => _image is null ? Array.Empty<string>() : _client.BlobSourcesOf(_image.Digest);

    private sealed class QuietableSink : IOperationSink
    {
        private readonly IOperationSink _inner;

        public QuietableSink(IOperationSink inner) => _inner = inner;

        public volatile bool QuietProgress;

        public void Progress(ProgressInfo info)
        {
            if (!QuietProgress)
            {
                _inner.Progress(info);
            }
        }

        public void Verbose(string message) => _inner.Verbose(message);

        public void Warning(string message) => _inner.Warning(message);
    }
}
