// What the page's modules use from outside them: uPlot, loaded by index.html as the
// vendored classic script (web/vendor/uplot/), and the hook the browser tests read.
declare const uPlot: any;
interface Window {
  soakd: {
    charts: () => { id: string; points: number }[];
    last: (chartId: string, label: string) => number | null;
    soak: () => { id: string; points: number; verdict: string; band: boolean; drawn: boolean }[];
  };
}
