using System.Management.Automation;
using OrasStaging.Oci;

namespace OrasStaging.Commands;

/// <summary>
/// The registry parameters that Resolve-OrasImage, Save-OrasBlob and Install-DiskImageFromOras share, and the one
/// place that turns them into <see cref="RegistryOptions"/>, so the three cannot drift apart.
/// </summary>
public abstract class RegistryCmdletBase : OrasCmdletBase
{
    /// <summary>Credentials for the origin registry only; otherwise (and for every mirror) docker's config.json, otherwise anonymous.</summary>
    [Parameter]
    [Credential]
    public PSCredential? Credential { get; set; }

    /// <summary>Accept any TLS certificate (as Invoke-WebRequest -SkipCertificateCheck).</summary>
    [Parameter]
    public SwitchParameter SkipCertificateCheck { get; set; }

    /// <summary>Use http (-PlainHttp:$false forces https). Loopback registries use http unless -SkipCertificateCheck is given.</summary>
    [Parameter]
    public SwitchParameter PlainHttp { get; set; }

    /// <summary>Retries of a failed request (connection errors, stalls, 408, 429, 5xx).</summary>
    [Parameter]
    [ValidateRange(0, 100)]
    public int MaximumRetryCount { get; set; } = 5;

    /// <summary>The base of the exponential backoff between retries, in seconds.</summary>
    [Parameter]
    [ValidateRange(0, 3600)]
    public int RetryIntervalSec { get; set; } = 1;

    /// <summary>A registries.conf to read instead of $CONTAINERS_REGISTRIES_CONF, the user's and the system's file.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? RegistryConfigPath { get; set; }

    /// <summary>A mirror (host[:port][/path], http:// for plain http) tried before the registries.conf mirrors and the origin.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string[] Mirror { get; set; } = Array.Empty<string>();

    /// <summary>
    /// The options for the registry client. -PlainHttp:$true/$false decides when given; otherwise the core's
    /// default (loopback http unless -SkipCertificateCheck).
    /// </summary>
    protected RegistryOptions NewRegistryOptions(string? cacheServer = null) => new()
    {
        PlainHttp = MyInvocation.BoundParameters.ContainsKey(nameof(PlainHttp)) ? PlainHttp.ToBool() : null,
        SkipCertificateCheck = SkipCertificateCheck.IsPresent,
        Credential = Credential?.GetNetworkCredential(),
        MaximumRetryCount = MaximumRetryCount,
        RetryIntervalSec = RetryIntervalSec,
        CacheServer = cacheServer,
        RegistryConfigPath = RegistryConfigPath is null ? null : ResolveOutputPath(RegistryConfigPath),
        Mirrors = Mirror,
    };

    /// <summary>
    /// Resolves each reference in turn and hands the image to <paramref name="use"/>; a reference that fails
    /// (to parse, to resolve, or in <paramref name="use"/>) is reported against its text and the next one runs.
    /// </summary>
    protected void ForEachResolved(
        IEnumerable<string> references, RegistryOptions options, ResolveOptions resolveOptions, Action<OrasImage> use)
    {
        foreach (string text in references)
        {
            try
            {
                var reference = ImageReference.Parse(text);
                var image = RunBlocking((sink, ct) => new RegistryClient(options, sink).ResolveAsync(reference, resolveOptions, ct));
                use(image);
            }
            catch (Exception ex) when (IsItemFailure(ex))
            {
                WriteMappedError(ex, text);
            }
        }
    }
}
