using System.Collections.Concurrent;
using OrasStaging.Oci.Mirrors;

namespace OrasStaging.Oci;

/// <summary>
/// Where each request of a pull goes: the <see cref="SourcePlanner"/>'s list (registries.conf, <c>-Mirror</c>,
/// withcache, the origin), tried in order. A source that is down, slow, refuses us or lacks the content is skipped
/// with a Verbose line; the origin is always last, and its error lists what every skipped source said.
/// </summary>
public sealed partial class RegistryClient
{
    private readonly ConcurrentDictionary<ImageReference, SourcePlan> _plans = new();
    private readonly ConcurrentDictionary<string, List<string>> _blobSources = new(StringComparer.OrdinalIgnoreCase);
    private SourceTransports _endpoints = null!;
    private RegistriesConf? _conf;

    /// <summary>The sources for <paramref name="reference"/>; refuses a blocked one. Read once per client and reference.</summary>
    internal SourcePlan PlanOf(ImageReference reference) => _plans.GetOrAdd(reference, r =>
    {
        var options = _transport.Options;
        var adHoc = options.Mirrors.Select(AdHocMirror.Parse).ToList();
        string? cacheServer = options.CacheServer ?? Environment.GetEnvironmentVariable("WITHCACHE_SERVER");
        var plan = SourcePlanner.Plan(r, Conf(), adHoc, cacheServer);
        foreach (string note in plan.Notes)
        {
            _sink.Verbose(note);
        }

        if (plan.Sources.Count > 1 || plan.Origin != r)
        {
            _sink.Verbose($"Sources for {r}: {string.Join(", ", plan.Sources.Select(s => s.ToString()))}.");
        }

        return plan;
    });

    private RegistriesConf Conf()
    {
        if (_conf is not null)
        {
            return _conf;
        }

        string? path = _transport.Options.RegistryConfigPath;
        if (path is { Length: 0 } || _transport.Options.Anonymous)
        {
            // Tab completion (Anonymous) must not fail on, or be slowed by, a broken config.
            return _conf = RegistriesConf.Empty;
        }

        var conf = RegistriesConfLocation.ForCurrentUser(path).Load();
        if (conf.Files.Count > 0)
        {
            _sink.Verbose($"Registries config: {string.Join(", ", conf.Files)}.");
        }

        return _conf = conf;
    }

    /// <summary>
    /// The plan for fetching <paramref name="image"/>'s blob: its reference's, when that plan's origin is where the
    /// image says it lives; otherwise (a hand-made or edited object) the image's registry alone.
    /// </summary>
    private SourcePlan BlobPlanOf(OrasImage image)
    {
        if (ImageReference.TryParse(image.Reference, out var reference, out _) && reference is not null)
        {
            var plan = PlanOf(reference);
            if (plan.Origin.Registry == image.Registry && plan.Origin.Repository == image.Repository)
            {
                return plan;
            }
        }

        var alone = new ImageReference(image.Registry, image.Repository, null, image.Digest);
        return SourcePlanner.Plan(alone, RegistriesConf.Empty, null, null);
    }

    /// <summary>Where the bytes of <paramref name="digest"/> came from in this client, in order ("mirror host/repo", "origin …", "cache …").</summary>
    internal IReadOnlyList<string> BlobSourcesOf(string digest) =>
        _blobSources.TryGetValue(digest, out var list) ? list.ToArray() : Array.Empty<string>();

    private void RecordBlobSource(string digest, string label)
    {
        var list = _blobSources.GetOrAdd(digest, _ => new List<string>());
        lock (list)
        {
            if (list.Count == 0 || list[^1] != label)
            {
                list.Add(label);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="attempt"/> at each source that may answer <paramref name="role"/>, in order, until one
    /// succeeds. Every source before the origin is skipped on a skippable failure; the origin's failure is the error.
    /// </summary>
    private async Task<T> AcrossAsync<T>(ImageReference reference, SourceRoles role, Func<SourceEndpoint, Task<T>> attempt, CancellationToken ct)
    {
        var plan = PlanOf(reference);
        var sources = plan.For(role).Where(s => s.Kind != SourceKind.Cache).ToList();
        if (sources.Count == 0 || sources[^1].Kind != SourceKind.Origin)
        {
            // name:tag@digest asks the tag only to describe the pinned blob: the origin answers that.
            sources.Add(plan.Sources[^1]);
        }

        var failures = new List<string>();
        for (int i = 0; ; i++)
        {
            var endpoint = await _endpoints.EndpointAsync(sources[i], ct).ConfigureAwait(false);
            if (i == sources.Count - 1)
            {
                try
                {
                    return await attempt(endpoint).ConfigureAwait(false);
                }
                catch (OrasStagingException ex) when (failures.Count > 0 && ex.Code != ErrorCode.DigestMismatch)
                {
                    throw SourceTransports.WithFailures(ex, failures);
                }
            }

            try
            {
                return await attempt(endpoint).ConfigureAwait(false);
            }
            catch (Exception ex) when (SourceTransports.IsSkippable(ex, ct))
            {
                string reason = ex is OrasStagingException ? ex.Message : RegistryTransport.Describe(ex);
                failures.Add($"{endpoint.Label}: {reason}");
                _sink.Verbose($"Skipping {endpoint.Label}: {reason}");
            }
        }
    }

    private static RegistryRequest Request(HttpMethod method, SourceEndpoint at, string suffix, string what) =>
        new(method, at.Transport.RegistryUri(at.Reference.Registry, $"/v2/{at.Reference.Repository}{suffix}"),
            at.Reference.Registry, at.Reference.Repository, at.IsOrigin ? what : $"{what} from {at.Label}");

    /// <summary>A blob source tried before the origin: GET from an offset, through its own transport.</summary>
    private sealed record BlobAlternate(string Label, Func<long?, CancellationToken, Task<HttpResponseMessage>> Get);

    private BlobAlternate MirrorBlob(PullSource mirror, string digest)
    {
        string label = SourceEndpoint.Describe(mirror);
        return new BlobAlternate(label, async (range, ct) =>
        {
            var at = await _endpoints.EndpointAsync(mirror, ct).ConfigureAwait(false);
            var request = Request(HttpMethod.Get, at, $"/blobs/{digest}", $"blob {Units.ShortDigest(digest)}") with { RangeFrom = range };
            return await at.Transport.SendAsync(request, ct).ConfigureAwait(false);
        });
    }
}
